"""Triggers as (mask, pattern): the form Neural Cleanse reverses and BadNets/blended attacks take.

A stamped input is ``(1 - mask) * x + mask * pattern``. A BadNets patch is a binary mask over the
patch with the patch as pattern; a blended trigger is a constant mask ``alpha`` with the blend image.
An all-to-all trigger (every class c taken to another, e.g. c + 1) has no one target: its success is
the share of inputs it moves off their own class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Trigger:
    """A trigger and, when known, the class it forces.

    Args:
        mask: [*input_shape] or, for images [C, H, W], [H, W] (shared across channels); values in [0, 1].
        pattern: [*input_shape].
        target: The attacked class; ``None`` lets the caller infer it from the model.
        all_to_all: The trigger moves inputs of every class off their own class, to no one target
            (``target`` must be ``None``): unlearning keeps true labels as for any trigger, and its
            success is measured untargeted (:func:`untargeted_success_rate`).
    """

    mask: Arr
    pattern: Arr
    target: int | None = None
    all_to_all: bool = False

    def __post_init__(self) -> None:
        if self.all_to_all and self.target is not None:
            raise ValueError(f"an all-to-all trigger has no one target (got target={self.target})")
        if not np.all(np.isfinite(self.mask)) or not np.all(np.isfinite(self.pattern)):
            raise ValueError("trigger mask and pattern must be finite")
        if float(self.mask.min(initial=0.0)) < 0.0 or float(self.mask.max(initial=0.0)) > 1.0:
            raise ValueError(f"trigger mask must lie in [0, 1], got [{self.mask.min()}, {self.mask.max()}]")

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the trigger fits inputs of ``input_shape``."""
        ok_mask = self.mask.shape in (input_shape, input_shape[-2:])
        if not ok_mask or self.pattern.shape != input_shape:
            raise ValueError(f"trigger mask {self.mask.shape} / pattern {self.pattern.shape} do not fit "
                             f"inputs {input_shape}")

    def apply(self, x: Arr) -> Arr:
        """Stamp the trigger on ``x`` [N, *input_shape]."""
        m = self.mask.astype(np.float32)
        out: Arr = ((1.0 - m) * x + m * self.pattern.astype(np.float32)).astype(np.float32)
        return out


def infer_target(pred_triggered: Arr, num_classes: int) -> int:
    """The class the trigger pushes inputs to: the most frequent prediction on stamped inputs."""
    return int(np.bincount(pred_triggered.astype(np.int64), minlength=num_classes).argmax())


def attack_success_rate(pred_triggered: Arr, y: Arr, target: int) -> float:
    """Share of stamped inputs whose true class is not ``target`` that are classified as ``target``."""
    keep = y != target
    return float(np.mean(pred_triggered[keep] == target)) if keep.any() else 0.0


def untargeted_success_rate(pred_clean: Arr, pred_triggered: Arr, y: Arr) -> float:
    """Share of the inputs the model gets right unstamped that the trigger moves off their true class
    (an all-to-all trigger's success; inputs already wrong without it are not counted as moved)."""
    keep = pred_clean == y
    return float(np.mean(pred_triggered[keep] != y[keep])) if keep.any() else 0.0
