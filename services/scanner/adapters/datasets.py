"""Load labelled data from .npz without pickles, with shape and dtype checks."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile

from services.scanner.domain.model import Dataset


class DataError(ValueError):
    """The data file is missing, unsafe or malformed."""


MAX_RATIO, RATIO_FLOOR = 200.0, 64 << 20  # a member inflating 200x to over 64 MiB is a zip bomb, not data
_ZIP, _NPY = (b"PK\x03\x04", b"PK\x05\x06"), b"\x93NUMPY"


def checked_file(path: Path, what: str) -> Path:
    """``path`` when it is an existing regular file, else a :class:`DataError` naming it and ``what`` it is."""
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


@contextmanager
def open_npz(path: Path, what: str = "data file") -> Iterator[NpzFile]:
    """``np.load`` of an .npz archive, with pickles refused and anything else (a text file, one .npy array,
    a pickle, a zip bomb) refused with a :class:`DataError` before numpy reads it."""
    with checked_file(path, what).open("rb") as fh:
        magic = fh.read(6)
    if magic.startswith(_NPY):
        raise DataError(f"{path} is a single .npy array; need an .npz archive (np.savez) with named arrays")
    if not magic.startswith(_ZIP):
        raise DataError(f"{path} is not an .npz archive (a zip of .npy arrays, as np.savez writes)")
    try:
        with zipfile.ZipFile(path) as z:
            for m in z.infolist():
                if m.file_size > RATIO_FLOOR and m.file_size > MAX_RATIO * max(m.compress_size, 1):
                    raise DataError(f"{path}: member {m.filename!r} has compression ratio "
                                    f"{m.file_size / max(m.compress_size, 1):.0f} (a zip bomb); refused")
        npz = np.load(path, allow_pickle=False)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    with npz:
        yield npz


def _read(npz: NpzFile, path: Path, name: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(npz[name])
    except ValueError as exc:  # numpy: object arrays when pickles are disallowed, or truncated data
        reason = "holds a pickled/object array, which is refused" if "allow_pickle" in str(exc) else "is unreadable"
        raise DataError(f"{name} in {path} {reason}: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{name} in {path} is unreadable: {exc}") from exc


def load_npz(path: Path, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> Dataset:
    """Read ``x`` (float, [N, *input_shape]) and ``y`` (int labels [N]) from ``path``.

    Pickled object arrays are refused (``allow_pickle=False``).
    """
    with open_npz(path) as npz:
        missing = {"x", "y"} - set(npz.files)
        if missing:
            raise DataError(f"{path} lacks array(s) {sorted(missing)}; need x (inputs) and y (labels)")
        x, y = _read(npz, path, "x"), _read(npz, path, "y")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"x in {path} has dtype {x.dtype}; need float32")
    if x.ndim < 2:
        raise DataError(f"x in {path} has shape {x.shape}; need [N, *sample shape] (one sample needs a batch "
                        f"dim of 1: x[None])")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataError(f"y in {path} has dtype {y.dtype} and shape {y.shape}; need integer labels [N]")
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"{path}: x has {len(x)} rows and y {len(y)}; need the same non-zero count")
    if not np.all(np.isfinite(x)):
        raise DataError(f"x in {path} holds NaN or infinite values")
    return check_fits(Dataset(x.astype(np.float32), y.astype(np.int64)), path, input_shape, num_classes)


def check_fits(data: Dataset, path: Path, input_shape: tuple[int, ...] | None, num_classes: int | None) -> Dataset:
    """``data`` when its samples have the model's shape and its labels are the model's classes."""
    if input_shape is not None and tuple(data.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"x in {path} has sample shape {data.x.shape[1:]}, the model expects {input_shape}")
    if num_classes is not None and (data.y.min() < 0 or data.y.max() >= num_classes):
        raise DataError(f"y in {path} has labels outside 0..{num_classes - 1}")
    return data
