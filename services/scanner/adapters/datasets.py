"""Load labelled data from .npz without pickles, with shape and dtype checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from services.scanner.domain.model import Dataset


class DataError(ValueError):
    """The data file is missing, unsafe or malformed."""


def load_npz(path: Path, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> Dataset:
    """Read ``x`` (float, [N, *input_shape]) and ``y`` (int labels [N]) from ``path``.

    Pickled object arrays are refused (``allow_pickle=False``).
    """
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise DataError(f"{path} lacks array(s) {sorted(missing)}; need x (inputs) and y (labels)")
            x, y = npz["x"], npz["y"]
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    except ValueError as exc:  # raised for object arrays when pickles are disallowed
        raise DataError(f"{path} holds pickled/object arrays, which are refused: {exc}") from exc
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"x in {path} has dtype {x.dtype}; need float32")
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
