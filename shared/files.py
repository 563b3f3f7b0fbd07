"""Small file helpers every service needs: streamed digests and ``file://`` URIs."""

from __future__ import annotations

import hashlib
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
