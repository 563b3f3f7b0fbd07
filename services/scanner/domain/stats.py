"""Small robust statistics and optimisers shared by detectors (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]
MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of sigma under normality


def robust_z(values: Arr, reference: Arr | None = None, floor: float = 0.0) -> Arr:
    """(value - median) / (1.4826 * MAD) of ``reference`` (``values`` itself by default).

    ``floor`` bounds the scale from below: shares that are almost all zero have a MAD of zero, and a
    handful of samples must not turn into an infinite z-score.
    """
    ref = np.asarray(values if reference is None else reference, dtype=float)
    med = float(np.median(ref))
    mad = MAD_SCALE * float(np.median(np.abs(ref - med)))
    return (np.asarray(values, dtype=float) - med) / max(mad, floor, 1e-6 * max(abs(med), 1.0))


REST_TOLERANCE = 0.01  # of the data's value range: a feature within it of its median is at rest


def activity(flat: Arr) -> Arr:
    """Per feature of ``flat`` [N, D]: the share of inputs that move it more than ``REST_TOLERANCE`` of the
    data's value range from its median (all zeros for constant data)."""
    lo, hi = float(flat.min()), float(flat.max())
    if hi - lo <= 0:
        return np.zeros(flat.shape[1])
    moved: Arr = (np.abs(flat - np.median(flat, axis=0)) > REST_TOLERANCE * (hi - lo)).mean(axis=0)
    return moved


MIN_CLASSES = 3
FEW_CLASSES = (f"fewer than {MIN_CLASSES} classes: a median/MAD outlier test cannot single a class out, so this "
               "detector cannot flag the model (a clean earlier version in the ledger still can)")
TWO_CLASSES = ("two classes: a median/MAD outlier test cannot single a class out, so each class is scored by "
               "how far its value departs from the other class's, in units of that gap's spread over clean "
               "two-class digit models (a scale measured elsewhere, not on this model)")


def class_outlier_note(num_classes: int) -> dict[str, str]:
    """Evidence to add when a per-class outlier test is blind (one class) or replaced (two classes)."""
    if num_classes == 2:
        return {"note": TWO_CLASSES}
    return {"note": FEW_CLASSES} if num_classes < MIN_CLASSES else {}


CATCH_ALL_SHARE = 0.75
CATCH_ALL = ("class {c} holds {share:.0%} of the clean inputs: a two-class task this lopsided is usually one class "
             "against everything else (a digit against the other nine, fraud against the rest), and such a catch-all "
             "class is naturally reached from the other by a small edit, so it is not flagged on that (a backdoor "
             "toward it is not seen by this test; the other class is still scored)")


def catch_all_class(y: Arr, num_classes: int) -> int | None:
    """The class of a two-class task that holds at least ``CATCH_ALL_SHARE`` of the labelled clean inputs ``y``.

    The two-class tests (a class's trigger or margin against the other class's, over a spread measured on pairs of
    digits) assume two classes alike in kind. One digit against the other nine is not: clean models reach "the
    others" from a digit with a trigger a fourth to a fiftieth the size of the reverse (``benchmarks/zoo/generate.py
    --flavor ovr``), and all 16 clean ones of that zoo were flagged. The share is read off the user's clean data, so
    a backdoor cannot fake it."""
    if num_classes != 2 or len(y) == 0:
        return None
    share = np.bincount(np.asarray(y, dtype=np.int64), minlength=2)[:2] / len(y)
    c = int(np.argmax(share))
    return c if share[c] >= CATCH_ALL_SHARE else None


def excuse_catch_all(index: Arr, y: Arr) -> tuple[Arr, dict[str, Any]]:
    """``index`` (two per-class values) with a catch-all class's (:func:`catch_all_class`) capped at 0, and the
    evidence that says so (nothing when there is none)."""
    c = catch_all_class(y, len(index))
    if c is None:
        return index, {}
    capped = np.asarray(index, dtype=float).copy()
    capped[c] = min(capped[c], 0.0)
    share = float(np.mean(np.asarray(y) == c))
    return capped, {"catch_all_class": c, "catch_all_note": CATCH_ALL.format(c=c, share=share)}


def two_class_z(values: Arr, scale: float) -> Arr:
    """For two classes: each value minus the other class's, over ``scale`` (the spread of that gap on clean
    models). The stand-in for :func:`robust_z` when two classes leave no population to take a median of."""
    v = np.asarray(values, dtype=float)
    if v.shape != (2,):
        raise ValueError(f"two_class_z needs two values, got shape {v.shape}")
    return (v - v[::-1]) / scale  # type: ignore[no-any-return]


def sigmoid(a: Arr) -> Arr:
    return 1.0 / (1.0 + np.exp(-a))


def entropy(p: Arr, axis: int = -1) -> Arr:
    """Shannon entropy (nats) along ``axis``."""
    q = np.clip(p, 1e-12, 1.0)
    return -(q * np.log(q)).sum(axis=axis)  # type: ignore[no-any-return]


class Adam:
    """Adam over a list of arrays, updated in place (minimisation)."""

    def __init__(self, params: list[Arr], lr: float | Arr) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[Arr]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= self.lr * (m / (1 - 0.9**self.t)) / (np.sqrt(v / (1 - 0.999**self.t)) + 1e-8)
