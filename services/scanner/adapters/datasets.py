"""Load labelled data from .npz without pickles, with shape and dtype checks."""

from __future__ import annotations

import math
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
DEFAULT_MAX_ARRAY_BYTES = 4 << 30  # numpy allocates what an .npy header declares before it reads a byte
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


def _declared_bytes(npz: NpzFile, name: str) -> tuple[int, str] | None:
    """Bytes the ``name`` array's .npy header declares, and its shape and dtype in words, read from the header
    alone; ``None`` when the header cannot be read that way (``np.load`` then says what is wrong)."""
    fmt = np.lib.format
    if npz.zip is None:  # closed
        return None
    try:
        with npz.zip.open(f"{name}.npy") as member:
            version = fmt.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                return None
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(member)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError):
        return None
    return math.prod(shape) * dtype.itemsize, f"{tuple(shape)} {dtype}"


def _check_declared_size(npz: NpzFile, path: Path, name: str, max_bytes: int) -> None:
    declared = _declared_bytes(npz, name)
    if declared is not None and declared[0] > max_bytes:
        raise DataError(f"{name} in {path} declares {declared[1]}: {_size(declared[0])}, over the cap of "
                        f"{_size(max_bytes)} on a loaded array (BDGUARD_SCANNER_MAX_ARRAY_BYTES raises it); "
                        f"or pass a subset")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n} bytes"


def _read(npz: NpzFile, path: Path, name: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(npz[name])
    except ValueError as exc:  # numpy: object arrays when pickles are disallowed, or truncated data
        reason = "holds a pickled/object array, which is refused" if "allow_pickle" in str(exc) else "is unreadable"
        raise DataError(f"{name} in {path} {reason}: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{name} in {path} is unreadable: {exc}") from exc


def load_npz(path: Path, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, *,
             max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> Dataset:
    """Read ``x`` (float, [N, *input_shape]) and ``y`` (int labels [N]) from ``path``.

    Pickled object arrays are refused (``allow_pickle=False``), and so is an array whose .npy header declares
    more than ``max_array_bytes`` (checked from the header, before numpy allocates it).
    """
    with open_npz(path) as npz:
        missing = {"x", "y"} - set(npz.files)
        if missing:
            raise DataError(f"{path} lacks array(s) {sorted(missing)}; need x (inputs) and y (labels)")
        for name in ("x", "y"):
            _check_declared_size(npz, path, name, max_array_bytes)
        x, y = _read(npz, path, "x"), _read(npz, path, "y")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise DataError(f"x in {path} has dtype {x.dtype}; need float32 (integer pixels are read as their values)")
    if x.ndim < 2:
        raise DataError(f"x in {path} has shape {x.shape}; need [N, *sample shape] (one sample needs a batch "
                        f"dim of 1: x[None])")
    if y.ndim != 1:
        raise DataError(f"y in {path} has dtype {y.dtype} and shape {y.shape}; need integer labels [N]")
    y = _integer_labels(y, path)
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"{path}: x has {len(x)} rows and y {len(y)}; need the same non-zero count")
    if not np.all(np.isfinite(x)):
        raise DataError(f"x in {path} holds NaN or infinite values")
    return check_fits(Dataset(x.astype(np.float32), y.astype(np.int64)), path, input_shape, num_classes)


def _integer_labels(y: np.ndarray[Any, Any], path: Path) -> np.ndarray[Any, Any]:
    """``y`` as int64 labels: integer and boolean labels as they are, float labels (as pandas writes them) when
    every one is a whole number."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (y == np.round(y))
        if whole.all():
            return y.astype(np.int64)
        bad = y[~whole][0]
        raise DataError(f"y in {path} holds a label that is not a whole number ({bad!r}); need integer class labels")
    raise DataError(f"y in {path} has dtype {y.dtype}; need integer labels [N]")


def check_fits(data: Dataset, path: Path, input_shape: tuple[int, ...] | None, num_classes: int | None) -> Dataset:
    """``data`` when its samples have the model's shape and its labels are the model's classes."""
    if input_shape is not None and tuple(data.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"x in {path} has sample shape {data.x.shape[1:]}, the model expects {input_shape}")
    if num_classes is not None and (data.y.min() < 0 or data.y.max() >= num_classes):
        raise DataError(f"y in {path} has labels outside 0..{num_classes - 1}")
    return data
