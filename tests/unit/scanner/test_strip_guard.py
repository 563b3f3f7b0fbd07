"""The STRIP runtime guard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import NotFittedError
from services.scanner.domain.detectors.strip import StripGuard

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit


class CountingModel:
    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0
        self.input_shape, self.num_classes = inner.input_shape, inner.num_classes

    def predict(self, x: Any) -> Any:
        self.calls += 1
        return self.inner.predict(x)


def test_triggered_inputs_have_lower_entropy_and_are_rejected_more_often(zoo: Zoo) -> None:
    model = open_model(zoo.backdoored_model)
    clean = load_npz(zoo.clean_npz)
    guard = StripGuard(seed=0).fit(model, clean.x[:200])
    held_out = clean.x[200:][clean.y[200:] != ATTACK.target]
    triggered = ATTACK.apply(held_out)
    assert guard.entropy(triggered).mean() < guard.entropy(held_out).mean()
    assert guard.is_trojaned(triggered).mean() > 2 * guard.is_trojaned(held_out).mean() + 0.1
    assert guard.is_trojaned(held_out).mean() < 0.1


def test_entropy_of_a_batch_costs_one_model_call(zoo: Zoo) -> None:
    model = CountingModel(open_model(zoo.clean_model))
    clean = load_npz(zoo.clean_npz)
    guard = StripGuard(n_perturbations=8).fit(model, clean.x[:100])  # type: ignore[arg-type]
    model.calls = 0
    out = guard.entropy(clean.x[:50])
    assert model.calls == 1 and out.shape == (50,)


def test_guard_refuses_to_score_before_fit_and_rejects_bad_parameters() -> None:
    with pytest.raises(NotFittedError):
        StripGuard().entropy(np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError, match=r"alpha=1\.5"):
        StripGuard(alpha=1.5)
