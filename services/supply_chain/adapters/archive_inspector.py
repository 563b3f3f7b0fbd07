"""Zip and tar archives, inspected from their directories and streamed members, never extracted.

Refuses traversal (absolute, drive, backslash or ``..`` names), links and device entries, encrypted
members, overlapping zip members, zip bytes that no listed member accounts for (a second archive, a
local entry left out of the directory: what another reader would load), decompression bombs
(per-member ratio, total size, entry count) and nested archives beyond the policy depth; nested
archives within it are inspected by the same rules. Members that are pickles, or that a loader
unpickles by name (``*.pkl``: a PyTorch zip's ``data.pkl``), are scanned in place.
"""

from __future__ import annotations

import json
import lzma
import posixpath
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..domain.policy import ArchiveLimits
from .sniffing import ARCHIVES, HEAD, Opener, sniff

OPAQUE_MODEL_FORMATS = frozenset({"hdf5", "gguf", "tflite"})

INSPECTABLE = frozenset({"zip", "tar", "gzip", "bz2", "xz"})  # what zipfile and tarfile read
# corrupt deflate/xz data and unsupported zip compression methods (zipfile lets these through)
_DECODER_ERRORS = (zlib.error, lzma.LZMAError, NotImplementedError)
PickleCheck = Callable[[str, Opener], list[str]]


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name could escape the extraction directory, or None."""
    if not name or "\x00" in name:
        return "empty or NUL in name"
    if "\\" in name:
        return "backslash in name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or ".." in name.split("/"):
        return "path traversal ('..')"
    return None


Members = Iterator[tuple[str, int, Opener]]
_NO_SLACK: tuple[int, ...] = (0,)
_DESCRIPTOR_SIZES = (12, 16, 20, 24)  # crc + 32- or 64-bit sizes, with or without the PK\x07\x08 signature
KERAS_CONFIG = "config.json"  # at a zip's root: what keras.saving.load_model builds the model from
KERAS_CONFIG_MAX = 32 * 2**20  # a root config.json larger than this cannot be told apart, and is refused


def _unlisted_bytes(source: IO[bytes], infos: list[zipfile.ZipInfo], start_dir: int) -> str | None:
    """Where the listed members (local header, data, descriptor) fail to tile the file up to the directory."""
    cursor, slack = 0, _NO_SLACK
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset - cursor not in slack:
            return f"bytes {cursor}..{info.header_offset} belong to no listed member"
        source.seek(info.header_offset)
        local = source.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return f"member {info.filename[:120]!r}: no local header at its offset"
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        cursor = info.header_offset + 30 + name_length + extra_length + info.compress_size
        slack = _DESCRIPTOR_SIZES if info.flag_bits & 0x08 else _NO_SLACK
    if start_dir - cursor not in slack:
        return f"bytes {cursor}..{start_dir} belong to no listed member"
    return None


def _keras_config(opener: Opener, size: int) -> bool:
    """True for a root ``config.json`` that Keras v3 would build a model from: a serialized Keras object
    (``class_name`` / ``module`` at its top level). A Hugging Face ``config.json`` (``model_type``,
    ``architectures``) is not one; a config too large to read within bounds counts as one."""
    if size > KERAS_CONFIG_MAX:
        return True
    with opener() as stream:
        raw = stream.read(KERAS_CONFIG_MAX + 1)
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):  # load_model cannot parse it either
        return False
    return isinstance(config, dict) and ("class_name" in config or "module" in config)


def _zip_members(source: IO[bytes], size: int, limits: ArchiveLimits, problems: list[str]) -> Members:
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            problems.append(f"{len(infos)} entries, limit {limits.max_entries}")
            return
        total, names = 0, set()
        for info in infos:
            if reason := unsafe_member_name(info.filename):
                problems.append(f"member {info.filename[:120]!r}: {reason}")
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(f"member {info.filename[:120]!r}: symbolic link")
            if info.flag_bits & 0x1:
                problems.append(f"member {info.filename[:120]!r}: encrypted, cannot be inspected")
            if info.filename in names:
                problems.append(f"member {info.filename[:120]!r}: duplicate name")
            names.add(info.filename)
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                problems.append(f"member {info.filename[:120]!r}: compression ratio {ratio:.0f} (bomb)")
            total += info.file_size
        if total > limits.max_total_uncompressed:
            problems.append(f"uncompressed total {total} bytes, limit {limits.max_total_uncompressed}")
        if sum(i.compress_size for i in infos) > size:
            problems.append("members overlap (compressed sizes exceed the archive size)")
        elif unlisted := _unlisted_bytes(source, infos, archive.start_dir):
            problems.append(f"{unlisted} (a second archive or a hidden entry another reader would load)")
        if problems:
            return
        for info in infos:
            if not info.is_dir():
                yield info.filename, info.file_size, lambda i=info: archive.open(i)  # type: ignore[misc]


def _tar_members(source: IO[bytes], size: int, limits: ArchiveLimits, problems: list[str]) -> Members:
    total, count, on_disk = 0, 0, size
    with tarfile.open(fileobj=source, mode="r:*") as archive:
        while (member := archive.next()) is not None:
            count += 1
            total += member.size
            if reason := unsafe_member_name(member.name):
                problems.append(f"member {member.name[:120]!r}: {reason}")
            if member.issym() or member.islnk():
                problems.append(f"member {member.name[:120]!r}: link to {member.linkname[:120]!r}")
            elif not (member.isfile() or member.isdir()):
                problems.append(f"member {member.name[:120]!r}: device, FIFO or other special entry")
            if count > limits.max_entries or total > limits.max_total_uncompressed:
                problems.append(f"over limits: {count} entries, {total} bytes uncompressed")
                return
            if total / max(on_disk, 1) > limits.max_ratio:
                problems.append(f"compression ratio {total / max(on_disk, 1):.0f} (bomb)")
                return
            if member.isfile() and not problems:
                yield member.name, member.size, lambda m=member: archive.extractfile(m)  # type: ignore[misc]


def _members_problems(
    source: IO[bytes],
    size: int,
    fmt: str,
    limits: ArchiveLimits,
    on_pickle: PickleCheck,
    depth: int,
    outer: str,
    allow_opaque: bool,
) -> list[str]:
    problems: list[str] = []
    members = _zip_members if fmt == "zip" else _tar_members
    try:
        for member, member_size, opener in members(source, size, limits, problems):
            name = outer + member
            with opener() as stream:
                head = stream.read(HEAD)
            inner = sniff(head, member_size, opener)
            if inner in ARCHIVES and (depth >= limits.max_nesting or inner not in INSPECTABLE):
                problems.append(f"member {name[:120]!r}: nested {inner} archive")
            elif inner in ARCHIVES:
                with opener() as nested:
                    problems += _members_problems(
                        nested, member_size, inner, limits, on_pickle, depth + 1, name + "/", allow_opaque
                    )
            elif inner in ("pickle", "numpy-object") or member.endswith(".pkl"):
                problems += on_pickle(name, opener)
            elif inner == "compressed-pickle":
                problems.append(f"member {name[:120]!r}: compressed pickle (joblib compress=) cannot be scanned")
            elif inner.startswith("polyglot"):
                problems.append(f"member {name[:120]!r}: {inner}: content is two formats at once")
            elif inner in OPAQUE_MODEL_FORMATS and not allow_opaque:
                problems.append(f"member {name[:120]!r}: format {inner!r} cannot be inspected safely")
            elif fmt == "zip" and member == KERAS_CONFIG and not allow_opaque and _keras_config(opener, member_size):
                problems.append(
                    f"member {name[:120]!r}: a Keras v3 archive, whose config names Python callables that "
                    "load_model imports (CVE-2025-1550); it cannot be inspected safely"
                )
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError, *_DECODER_ERRORS) as exc:
        problems.append(f"unreadable {fmt} archive: {type(exc).__name__}: {exc}"[:300])
    return problems


def archive_members(
    path: Path, fmt: str, limits: ArchiveLimits, on_pickle: PickleCheck, allow_opaque: bool = False
) -> list[str]:
    """Check an archive in place; ``on_pickle(name, opener)`` is called, while open, for pickle members.

    Nested archives are refused past ``limits.max_nesting`` and inspected by the same rules within it
    (their members named ``outer/inner``). A member in a model format that can carry code but cannot be
    inspected here (``OPAQUE_MODEL_FORMATS``: HDF5 with Keras Lambda layers, GGUF with its chat
    template, TFLite with custom ops; a zip whose root ``config.json`` is a serialized Keras object,
    which Keras v3 loads as a model) is refused as it is at the top level, unless ``allow_opaque``
    (the policy's ``allow_unknown_formats``). Raw bytes (a PyTorch zip's tensor storages) are not a
    format and pass.

    Returns:
        Problems found, empty when the archive is acceptable.
    """
    with open(path, "rb") as source:
        return _members_problems(source, path.stat().st_size, fmt, limits, on_pickle, 0, "", allow_opaque)
