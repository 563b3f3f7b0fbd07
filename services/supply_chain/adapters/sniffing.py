"""Decide a file's format from its bytes, never from its name.

A file counts as a pickle when it starts with the PROTO opcode or when the opcode reader (a parser
that executes nothing and decodes arguments as ``pickle.load`` does) reads it from byte 0 up to a
STOP or an importing/calling opcode: that prefix is what ``pickle.load`` would run before failing.
Content that a magic number (or a safetensors header) claims, and that read from byte 0 imports a
global, is a polyglot; so is a file whose end holds a zip central directory while its start says
something else. A zlib or LZMA-alone stream (what ``joblib.dump(compress=...)`` writes) whose first
bytes decompress to a pickle is a ``compressed-pickle``.
"""

from __future__ import annotations

import ast
import codecs
import io
import lzma
import struct
import zipfile
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO

from numpy.lib import format as npy_format

from .pickle_inspector import would_import
from .pickle_ops import genops
from .protobuf_walk import walks_as_onnx

HEAD = 64 * 1024
_CODE_OPCODES = frozenset({"STOP", "GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"})
Opener = Callable[[], AbstractContextManager[IO[bytes]]]
ONNX_FIRST_BYTES = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A})
ARCHIVES = frozenset({"zip", "tar", "gzip", "bz2", "xz", "zstd", "lz4", "7z", "rar"})
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bz2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"\x04\x22\x4d\x18", "lz4"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (257, b"ustar", "tar"),
    (0, b"\x93NUMPY", "numpy"),
    (0, b"\x89HDF\r\n\x1a\n", "hdf5"),
    (0, b"GGUF", "gguf"),
    (4, b"TFL3", "tflite"),
)


def reads_as_pickle(stream: IO[bytes]) -> bool:
    """True when the stream, parsed from byte 0, reaches a STOP or an opcode that imports or calls.

    ``pickle.load`` runs GLOBAL and REDUCE as it meets them, so a truncated stream is as dangerous as
    a complete one: reaching such an opcode before the first parse error is enough.
    """
    try:
        for opcode, _arg, _pos in genops(stream):
            if opcode.name in _CODE_OPCODES:
                return True
    except Exception:  # a parse failure before any such opcode: nothing would have run
        return False
    return False


def npy_holds_objects(head: bytes) -> bool:
    """True when a ``.npy`` header declares a dtype holding objects (whose payload is a pickle).

    The dtype is built by NumPy's own header parser, so ``'object'``, ``'O8'`` or an object field in a
    structured dtype count alike.
    """
    try:
        size_fmt, start = ("<H", 10) if head[6] == 1 else ("<I", 12)
        (length,) = struct.unpack(size_fmt, head[8:start])
        header = ast.literal_eval(head[start : start + length].decode("latin-1"))
        return bool(npy_format.descr_to_dtype(header["descr"]).hasobject)
    except Exception:  # an unreadable header is treated as the dangerous case
        return True


def compressed_pickle(head: bytes) -> bool:
    """True when ``head`` starts a zlib or LZMA-alone stream whose first bytes decompress to a pickle.

    Raw tensor bytes may start like a zlib header (two bytes, one in ~2000); only a stream that
    decodes and reads as a pickle counts.
    """
    if head[:1] == b"\x78" and len(head) > 1 and int.from_bytes(head[:2], "big") % 31 == 0:
        decoder: zlib._Decompress | lzma.LZMADecompressor = zlib.decompressobj()
    elif head[:3] == b"\x5d\x00\x00":
        decoder = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    else:
        return False
    try:
        plain = decoder.decompress(head, HEAD)
    except (zlib.error, lzma.LZMAError):
        return False
    return plain[:1] == b"\x80" or reads_as_pickle(io.BytesIO(plain))


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if size < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _is_text(head: bytes, complete: bool) -> bool:
    """UTF-8 without NUL; a window cut from a longer file (not ``complete``) may end mid-character."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return "\x00" not in text


def _by_magic(head: bytes, size: int) -> str | None:
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return "numpy-object" if name == "numpy" and npy_holds_objects(head) else name
    return "safetensors" if _looks_like_safetensors(head, size) else None


def sniff(head: bytes, size: int, reopen: Opener) -> str:
    """Name the format of content whose first bytes are ``head`` (``reopen`` gives a fresh stream)."""
    if size == 0:
        return "empty"
    # magic numbers first: a safetensors header length whose low byte is 0x80 (one real file in 256)
    # starts like pickle's PROTO opcode; the polyglot check below still catches one that pickle.load runs
    if fmt := _by_magic(head, size):
        # a zip is exempt: it starts with PERSID, which stops an unpickler without persistent_load,
        # and torch.load (which has one) reads a zip as a zip
        with reopen() as stream:
            if fmt != "zip" and would_import(stream):
                return f"polyglot({fmt}+pickle)"
        return fmt
    if head[:1] == b"\x80":
        return "pickle"
    if compressed_pickle(head):
        return "compressed-pickle"
    with reopen() as stream:
        if reads_as_pickle(stream):
            return "pickle"
    if head[0] in ONNX_FIRST_BYTES:
        return "onnx"
    with reopen() as stream:
        if walks_as_onnx(stream, size):
            return "onnx"
    if _is_text(head, complete=len(head) >= size):
        return "text"
    return "unknown"


def sniff_file(path: str) -> str:
    """Sniff a file on disk; a zip directory at the end of a non-zip file marks a polyglot."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD)
        handle.seek(0, 2)
        size = handle.tell()
    fmt = sniff(head, size, lambda: open(path, "rb"))  # noqa: SIM115 (an opener, entered by the caller)
    if fmt not in ("zip", "empty") and zipfile.is_zipfile(path):
        return f"polyglot({fmt}+zip)"
    return fmt
