"""Read a trigger (.npz with ``mask``, ``pattern`` and optional ``target`` or ``all_to_all``) without pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from services.remediation.domain.trigger import Trigger
from services.scanner.adapters.datasets import DataError, open_npz


class TriggerError(ValueError):
    """The trigger file is missing, unsafe or does not fit the model."""


def load_trigger(path: Path, input_shape: tuple[int, ...], num_classes: int | None = None) -> Trigger:
    """Load and reshape a trigger for inputs of ``input_shape``.

    ``mask`` may hold ``prod(input_shape)`` values or, for images, ``H*W`` (shared across channels);
    ``pattern`` holds ``prod(input_shape)`` values. Flattened arrays, as Neural Cleanse keeps them, are
    accepted. ``all_to_all`` (a true scalar) marks a trigger that moves every class off its own, to no one
    target; it cannot come with ``target``, which must be one of the ``num_classes`` classes when given.
    """
    try:
        with open_npz(path, "trigger file") as npz:
            if not {"mask", "pattern"} <= set(npz.files):
                raise TriggerError(f"{path} needs arrays 'mask' and 'pattern', has {sorted(npz.files)}")
            mask, pattern = npz["mask"], npz["pattern"]
            target = int(npz["target"]) if "target" in npz.files else None
            every_class = bool(npz["all_to_all"]) if "all_to_all" in npz.files else False
    except (DataError, TriggerError):
        raise  # they name the file and the problem already
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise TriggerError(f"{path} is not a readable .npz file: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise TriggerError(f"{path}: unusable or pickled arrays refused: {exc}") from exc
    if target is not None and (target < 0 or (num_classes is not None and target >= num_classes)):
        classes = f" (0..{num_classes - 1})" if num_classes else ""
        raise TriggerError(f"{path}: target {target} is not a class of the model{classes}")
    full, hw = int(np.prod(input_shape)), int(np.prod(input_shape[-2:]))
    shapes = {full: input_shape, hw: input_shape[-2:]}
    if mask.size not in shapes or pattern.size != full:
        raise TriggerError(f"{path}: mask of {mask.size} and pattern of {pattern.size} values do not fit "
                           f"inputs {input_shape}")
    try:
        return Trigger(mask.astype(np.float32).reshape(shapes[mask.size]),
                       pattern.astype(np.float32).reshape(input_shape), target, all_to_all=every_class)
    except ValueError as exc:
        raise TriggerError(f"{path}: {exc}") from exc
