"""Resolve an artifact URI to regular files without following links, and hash them streamed."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 20


class ArtifactLayoutError(ValueError):
    """The artifact is missing, too large, or contains links or special files."""


@dataclass(frozen=True)
class ArtifactFile:
    relpath: str  # POSIX path relative to the artifact root; the file name for a single file
    path: Path
    size: int


@dataclass(frozen=True)
class Artifact:
    root: Path  # the file itself, or the directory
    is_dir: bool
    files: tuple[ArtifactFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def uri_to_path(uri: str) -> Path:
    """Accept a local path or a ``file://`` URI (no host other than localhost)."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArtifactLayoutError(f"file URI with a remote host: {parts.netloc!r}")
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:
        raise ArtifactLayoutError(f"unsupported artifact URI scheme {parts.scheme!r}")
    return Path(uri)


def _regular(path: Path, max_file_bytes: int) -> int:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ArtifactLayoutError(f"symbolic link in artifact: {path.name!r}")
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactLayoutError(f"not a regular file: {path.name!r}")
    if info.st_nlink != 1:
        raise ArtifactLayoutError(f"file has {info.st_nlink} hard links: {path.name!r}")
    if info.st_size > max_file_bytes:
        raise ArtifactLayoutError(f"{path.name!r} is {info.st_size} bytes, limit {max_file_bytes}")
    return info.st_size


def load_artifact(uri: str, *, max_file_bytes: int, max_total_bytes: int, max_files: int) -> Artifact:
    """List the artifact's files; refuse links, special files and anything over the limits."""
    root = uri_to_path(uri)
    try:
        info = os.lstat(root)
    except OSError as exc:
        raise ArtifactLayoutError(f"artifact not readable: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise ArtifactLayoutError("artifact path is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        return Artifact(root, False, (ArtifactFile(root.name, root, _regular(root, max_file_bytes)),))
    files: list[ArtifactFile] = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                    continue
                files.append(ArtifactFile(path.relative_to(root).as_posix(), path, _regular(path, max_file_bytes)))
                if len(files) > max_files:
                    raise ArtifactLayoutError(f"more than {max_files} files")
    artifact = Artifact(root, True, tuple(sorted(files, key=lambda f: f.relpath)))
    if artifact.total_bytes > max_total_bytes:
        raise ArtifactLayoutError(f"artifact is {artifact.total_bytes} bytes, limit {max_total_bytes}")
    if not files:
        raise ArtifactLayoutError("artifact directory is empty")
    return artifact


def open_no_follow(path: Path) -> int:
    """Open read-only, refusing a symlink swapped in after listing."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))


def file_opener(path: Path) -> Callable[[], BufferedReader]:
    """A function that opens ``path`` anew (no symlink follow) for a ``with`` block."""
    return lambda: open(open_no_follow(path), "rb")


def sha256_file(path: Path, limit: int) -> str:
    """Hex SHA-256 of a file read in 1 MiB chunks; refuses to read more than ``limit`` bytes."""
    digest, read = hashlib.sha256(), 0
    with os.fdopen(open_no_follow(path), "rb") as handle:
        while chunk := handle.read(CHUNK):
            read += len(chunk)
            if read > limit:
                raise ArtifactLayoutError(f"{path.name!r} grew past {limit} bytes while hashing")
            digest.update(chunk)
    return digest.hexdigest()
