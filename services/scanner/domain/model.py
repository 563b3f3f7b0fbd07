"""Ports the detectors see: the model handle and labelled data. Pure (numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
Cotangent = Callable[[FloatArray], FloatArray]


@runtime_checkable
class ModelHandle(Protocol):
    """What a detector may ask of a classifier.

    ``predict`` returns class probabilities [N, K]. ``value_and_grad`` returns the logits [N, K]
    and ``d loss / d x`` (same shape as ``x``) for a loss whose gradient w.r.t. the logits is
    ``cotangent(logits)``; it may be exact (autodiff) or estimated (gradient-free), see
    ``exact_gradients``. Handles may also tell what a sample costs (``macs_per_sample``: one forward
    pass; ``gradient_passes``: forward passes per ``value_and_grad`` sample); budgeted detectors read
    them with ``getattr`` and fall back to their step caps. ``input_scaler`` (optional, read with
    ``getattr``): per-feature ``(a, b)`` when the model starts by scaling its input to ``a * x + b`` (a scaler
    fitted on its training data), which bounds where trigger searches look (:mod:`.search_box`).
    """

    input_shape: tuple[int, ...]  # per sample, e.g. (64,) or (1, 16, 16)
    num_classes: int
    exact_gradients: bool

    def predict(self, x: FloatArray) -> FloatArray: ...

    def layers(self) -> Sequence[str]:
        """Candidate activation layers, closest to the output last (the penultimate is ``[-1]``)."""
        ...

    def activations(self, x: FloatArray, layer: str) -> FloatArray:
        """Activations of ``layer`` for ``x``, flattened to [N, F]."""
        ...

    def value_and_grad(self, x: FloatArray, cotangent: Cotangent) -> tuple[FloatArray, FloatArray]: ...


@dataclass(frozen=True)
class Dataset:
    """Labelled inputs: ``x`` [N, *input_shape] float32 and ``y`` [N] int64."""

    x: FloatArray
    y: IntArray

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or len(self.x) != len(self.y):
            raise ValueError(f"x has shape {self.x.shape} and y {self.y.shape}; need x [N, ...] and y [N]")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, n: int, seed: int) -> Dataset:
        """At most ``n`` samples, drawn without replacement (keeps every class when it can)."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return Dataset(self.x[idx], self.y[idx])


def softmax(z: FloatArray) -> FloatArray:
    """Row-wise softmax of logits [N, K]."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: FloatArray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out
