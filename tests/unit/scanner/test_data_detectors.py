"""Data-level detectors on planted activation structure (a fake handle), so each is tested in its own domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from services.scanner.domain.detectors import create
from services.scanner.domain.model import Dataset

pytestmark = pytest.mark.unit
Arr = np.ndarray[Any, Any]


class FeatureHandle:
    """A handle whose 'penultimate activations' are the inputs themselves."""

    exact_gradients = False

    def __init__(self, dim: int, k: int) -> None:
        self.input_shape, self.num_classes = (dim,), k

    def predict(self, x: Arr) -> Arr:
        raise AssertionError("not used")

    def layers(self) -> Sequence[str]:
        return ["features"]

    def activations(self, x: Arr, layer: str) -> Arr:
        return x

    def value_and_grad(self, x: Arr, cotangent: Any) -> tuple[Arr, Arr]:
        raise AssertionError("not used")


def _classes(rng: np.random.Generator, n: int = 80, dim: int = 12, k: int = 6) -> tuple[Arr, Arr, Arr]:
    centres = rng.normal(0, 6, (k, dim))
    y = np.repeat(np.arange(k), n)
    return (centres[y] + rng.normal(0, 1, (len(y), dim))).astype(np.float32), y.astype(np.int64), centres


def _poisoned(rng: np.random.Generator, target: int = 3, count: int = 16) -> tuple[Dataset, set[int]]:
    x, y, _ = _classes(rng)
    idx = rng.choice(np.flatnonzero(y != target), size=count, replace=False)
    trigger = np.zeros(x.shape[1], np.float32)
    trigger[:3] = 9.0
    # A poisoned sample keeps its source class's look, carries the trigger, and is labelled the target.
    x[idx] = x[idx] + trigger
    y[idx] = target
    return Dataset(x, y), {int(i) for i in idx}


@pytest.mark.parametrize("key", ["activation_clustering.v1", "spectral_signatures.v1", "label_consistency.v1"])
def test_detector_finds_a_planted_poison_cluster_in_the_target_class(key: str) -> None:
    data, truth = _poisoned(np.random.default_rng(0))
    result = create(key, layer="features" if key != "label_consistency.v1" else "input").fit(
        FeatureHandle(12, 6), data).result()
    found = set(result.suspicious_indices)
    assert result.flagged and result.target_classes == [3]
    assert len(found & truth) / len(found) >= 0.9 and len(found & truth) / len(truth) >= 0.8


@pytest.mark.parametrize("key", ["activation_clustering.v1", "spectral_signatures.v1", "label_consistency.v1"])
def test_detector_flags_no_class_of_clean_well_separated_data(key: str) -> None:
    x, y, _ = _classes(np.random.default_rng(1))
    result = create(key, layer="features" if key != "label_consistency.v1" else "input").fit(
        FeatureHandle(12, 6), Dataset(x, y)).result()
    assert not result.flagged and result.target_classes == []
