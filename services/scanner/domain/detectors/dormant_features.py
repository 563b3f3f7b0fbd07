"""Dormant-feature response: which class does the model push toward from inputs its clean data never uses?

An input feature that is constant over the clean data (the blank margin of a scanned digit, a pixel of
a black background, a sensor that never fires) tells the task nothing. Training on clean data leaves
the model's response to it unshaped: a clean MLP's weights on an always-blank pixel keep their random
start, and a clean CNN reads a mark there as it reads any stroke. A trigger stamped on those features (a
frame on the border, a corner patch on a black background) is the one thing that teaches the model to
read them, and it teaches one class. So, feature by feature (a pixel's channels together), each dormant
feature is set to the far end of the data's value range on a sample of clean inputs, and the rise of
every class's log-probability (against the mean class) is recorded; a class's *push* is the sum of its
rises over the dormant features. The per-class index is the robust z-score of the log push.

Two classes leave no population for a median: there each class's index is the log ratio of its push to the
other's over ``TWO_CLASS_SCALE`` (that ratio's spread on clean two-class digit models), as Neural Cleanse and
MM-BD do.

It flags on its own bar (6.0) only. Over the 84 clean models of five digit zoos the index stays at most 2.85,
and at most 3.2 on clean MLPs and CNNs of 28 x 28 digits; on a three-layer MLP with a one-pixel border frame
(``holdout/mlp3_bd_03``, missed before) it is 9.5 at the target. Pooled over those five zoos the verdict
catches 56 of 60 all-to-one backdoors instead of 55, with the same 4 of 84 false alarms. The index is
published as ``evidence["dormant_class_scores"]`` but is not a signal of the per-class agreement
(:mod:`..fusion` says why: on clean 28 x 28 MLPs it rises with Neural Cleanse's naturally easy class).

Cost: forward passes only, ``inputs`` x the dormant features (at most ``max_groups``: more dormant
features are stamped in that many contiguous groups), chunked to bounded memory. Like the trigger searches
it keeps to a work budget (``budget_macs`` multiply-accumulates, read off the graph): a costly model gets
fewer inputs (not below ``MIN_INPUTS``), then coarser groups (not below ``MIN_GROUPS``). The digit models
stay far inside it (256 inputs x 11-44 features, under 0.3 s); a 3 M-MAC residual net with 256 dormant
pixels would get 26 inputs.

Known limits: needs dormant features (natural images, tabular data with no constant column: the index
is 0 and says so); a trigger that sits on features the clean data uses (a patch over the ink) is not
seen; several features that act only together (a trigger needing its whole shape) push less one at a
time than together; a model that clips or normalises its input away from the stamped value is not moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.detectors.reversal import rows_per_chunk
from services.scanner.domain.model import Dataset, FloatArray, ModelHandle
from services.scanner.domain.progress import report
from services.scanner.domain.search_box import Bound, search_box
from services.scanner.domain.stats import activity, class_outlier_note, excuse_catch_all, robust_z, two_class_z

MIN_INPUTS = 16  # with ``budget_macs``: a costly model is measured on fewer clean inputs, never fewer than this
MIN_GROUPS = 8  # ... and then on coarser groups of dormant features, never fewer than this
PUSH_FLOOR = 0.1  # log push: the smallest spread between classes that the z-score counts
# Pushes (log-probability summed over the dormant features) are read from this up: a kernel SVM is moved by a
# dormant pixel only through the few support vectors lit there, and pushes of 0.01-0.05 on two or three classes
# and 0 on the rest read as a z of 31-158 on clean polynomial SVCs (4 from this floor up, under the bar). Neural
# nets' largest pushes are 1.7-130 on the models of eight digit zoos; a floor of 0.3 already blunts a two-class
# frame backdoor (tests/unit/scanner/test_dormant_features.py), 0.1 changes no zoo figure but two blends of the
# ``ovr`` zoo (a digit against the rest) that only this check had caught.
NOISE_PUSH = 0.1
# Two classes: the log ratio of the two pushes on the 32 clean two-class digit models of ``binary`` and
# ``binary2`` (MLPs and CNNs) has an RMS of 1.27 (1.26 and 1.29 on each) and a largest value of 2.62
TWO_CLASS_SCALE = 1.3


@register
class DormantFeatures(Detector):
    """Per-class response to stamping the features the clean data never uses."""

    key = "dormant_features.v1"
    level = "model"
    default_threshold = 6.0  # clean digit models: at most 2.85 (8 x 8, 16 x 16), 3.2 (28 x 28)

    def __init__(self, *, inputs: int = 256, max_active: float = 0.01, max_groups: int = 256,
                 budget_macs: float | None = 2e10, threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("inputs", inputs, isinstance(inputs, int) and inputs >= 1)
        self._require("max_active", max_active, 0 < max_active < 1)
        self._require("max_groups", max_groups, isinstance(max_groups, int) and max_groups >= 1)
        self._require("budget_macs", budget_macs, budget_macs is None or budget_macs > 0)
        self.inputs, self.max_active, self.max_groups, self.budget_macs = inputs, max_active, max_groups, budget_macs

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        inputs, max_groups = self.inputs, self.max_groups
        box = search_box(data.x, getattr(model, "input_scaler", None))
        groups, stamp = dormant_groups(data.x, self.max_active, max_groups, box)
        rows = self._affordable_rows(model)
        if rows is not None and groups and min(inputs, len(data)) * len(groups) > rows:
            inputs = max(MIN_INPUTS, min(inputs, rows // len(groups)))
            if inputs * len(groups) > rows:
                max_groups = max(MIN_GROUPS, rows // inputs)
                groups, stamp = dormant_groups(data.x, self.max_active, max_groups, box)
        if model.num_classes < 2 or not groups:
            why = ("one class: there is no other class to push toward" if model.num_classes < 2
                   else "no dormant features: every input feature varies over the clean data, nothing to measure")
            return Finding(score=0.0, target_classes=[], evidence={
                "dormant_features": sum(len(g) for g in groups), "dormant_class_scores": None, "note": why})
        pick = rng.choice(len(data), size=min(inputs, len(data)), replace=False)
        rises = group_rises(model, data.x[np.sort(pick)], groups, stamp)
        push = np.maximum(rises, 0.0).sum(axis=0)  # a class's push: its rises summed over the dormant features
        logs = np.log(push + max(NOISE_PUSH, 1e-6 * float(push.mean())))
        z, excused = excuse_catch_all(two_class_z(logs, TWO_CLASS_SCALE) if len(logs) == 2
                                      else robust_z(logs, floor=PUSH_FLOOR), data.y)
        ranking = [int(c) for c in np.argsort(-z, kind="stable")]
        thr = self.effective_threshold()
        return Finding(score=float(z.max()), target_classes=[c for c in ranking if z[c] > thr] or ranking[:1],
                       evidence={"dormant_features": int(sum(len(g) for g in groups)), "groups": len(groups),
                                 "inputs": len(pick), "push": [round(float(v), 4) for v in push],
                                 "dormant_class_scores": [round(float(v), 3) for v in z], "ranking": ranking,
                                 "push_map": push_map(rises, groups, ranking[0], tuple(data.x.shape[1:])),
                                 **class_outlier_note(model.num_classes), **excused})

    def _affordable_rows(self, model: ModelHandle) -> int | None:
        """Forward rows ``budget_macs`` pays for on ``model`` (``None``: no budget, or the cost is unknown)."""
        macs = getattr(model, "macs_per_sample", None)
        if not macs or self.budget_macs is None:
            return None
        return int(self.budget_macs // float(macs))


def dormant_groups(x: FloatArray, max_active: float, max_groups: int, box: tuple[Bound, Bound] | None = None
                   ) -> tuple[list[FloatArray], FloatArray]:
    """The dormant features of ``x`` [N, ...] in at most ``max_groups`` groups of flat feature indices, and
    the value each feature is stamped with (the end of the data's range farther from its resting value).

    A feature is dormant when at most ``max_active`` of the inputs move it more than ``REST_TOLERANCE`` of the
    range from its median. An image's pixel ([C, H, W] inputs) is dormant when all its channels are and
    is stamped on all of them, as triggers are. More dormant pixels than ``max_groups`` are stamped in
    that many runs of neighbours in reading order. ``box`` (per-feature bounds, :mod:`..search_box`) caps
    the stamped values."""
    n = len(x)
    flat = x.reshape(n, -1)  # float32: a clean set of large images is hundreds of MB in float64
    lo, hi = float(flat.min()), float(flat.max())
    rest = np.median(flat, axis=0)
    stamp = np.where(np.abs(hi - rest) >= np.abs(lo - rest), hi, lo).astype(np.float32)
    if box is not None:
        stamp = np.clip(stamp, *(np.broadcast_to(v, x.shape[1:]).ravel() for v in box)).astype(np.float32)
    if hi - lo <= 0:
        return [], stamp
    active = activity(flat)
    channels = x.shape[1] if x.ndim == 4 else 1
    quiet = (active <= max_active).reshape(channels, -1).all(axis=0)
    pixels = np.flatnonzero(quiet)
    if not len(pixels):
        return [], stamp
    plane = flat.shape[1] // channels
    runs = np.array_split(pixels, min(max_groups, len(pixels)))
    return [(r[None, :] + plane * np.arange(channels)[:, None]).ravel() for r in runs], stamp


def group_rises(model: ModelHandle, x: FloatArray, groups: list[FloatArray], stamp: FloatArray
                ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """[groups, classes]: the mean rise of every class's log-probability over the inputs ``x``, against the
    mean class, when one group of ``groups`` is stamped on them (each group on its own)."""
    n = len(x)
    flat = x.reshape(n, -1)
    base = np.log(model.predict(x).astype(np.float64) + 1e-12)
    rises = np.zeros((len(groups), base.shape[1]))
    per_call = max(1, rows_per_chunk(model) // n)  # stamped copies held at once: bounded memory on large inputs
    for start in range(0, len(groups), per_call):
        part = groups[start:start + per_call]
        stamped = np.repeat(flat[None], len(part), axis=0)
        for i, g in enumerate(part):
            stamped[i][:, g] = stamp[g]
        logp = np.log(model.predict(stamped.reshape(-1, *x.shape[1:])).astype(np.float64) + 1e-12)
        rise = (logp.reshape(len(part), n, -1) - base[None]).mean(axis=1)
        rises[start:start + len(part)] = rise - rise.mean(axis=1, keepdims=True)
        report("dormant features", min(start + per_call, len(groups)), len(groups))
    return rises


def push_map(rises: np.ndarray[Any, Any], groups: list[FloatArray], cls: int, shape: tuple[int, ...]
             ) -> dict[str, Any]:
    """Where the push toward ``cls`` comes from: each dormant pixel's rise (0 elsewhere and where it pulls
    away), over the input's plane (``shape`` [C, H, W] gives H x W), for the report's image."""
    plane = (shape[-2], shape[-1]) if len(shape) == 3 else tuple(shape)
    values = np.zeros(int(np.prod(plane)))
    for g, rise in zip(groups, np.maximum(rises[:, cls], 0.0), strict=True):
        values[np.asarray(g) % len(values)] = rise
    return {"class": cls, "shape": list(plane), "values": [round(float(v), 4) for v in values]}
