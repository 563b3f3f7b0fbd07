"""Small file helpers every service needs: streamed digests, ``file://`` URIs, printable names, output checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlparse


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file, read in chunks (never the whole file in memory)."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            sha.update(block)
    return "sha256:" + sha.hexdigest()


def local_path(uri: str) -> Path:
    """A ``file://`` URI or a plain path as a Path."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def printable(path: Path | str) -> str:
    """``path`` as text any JSON or terminal takes: bytes that are not UTF-8 (a file name from another
    locale, held as surrogates by Python) shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def output_problem(path: Path, *, create_parents: bool = False) -> str | None:
    """Why a file cannot be written at ``path`` (checked before a long job, so its result is not lost), or
    ``None``: the path is a directory, its directory does not exist (with ``create_parents``: the nearest
    existing one is not a directory), or it is not writable."""
    parent = path.parent
    if path.is_dir():
        return f"{printable(path)} is a directory"
    while create_parents and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{printable(parent)} is not a directory" if parent.exists() else \
            f"directory {printable(parent)} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{printable(path)} is not writable"
    return None
