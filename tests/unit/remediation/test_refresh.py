"""Trigger refresh (I-BAU-style inner step): it strengthens a weak trigger and respects the mask budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from services.remediation.adapters.tape_training import TapeModel
from services.remediation.adapters.trigger_refresh import refresh_trigger
from services.remediation.adapters.triggers import load_trigger
from services.remediation.domain.trigger import Trigger, attack_success_rate

pytestmark = pytest.mark.unit


def _setup(planted: Any) -> tuple[TapeModel, Trigger, np.ndarray, np.ndarray]:
    tm = TapeModel(onnx.load(str(planted.model)), "probabilities")
    true = load_trigger(planted.trigger_npz, (64,))
    with np.load(planted.clean_npz) as d:
        x, y = d["x"], d["y"]
    weak = Trigger(true.mask, np.full(64, 0.5, np.float32), true.target)  # right place, wrong pattern
    return tm, weak, x, y


def test_refreshing_the_pattern_inside_the_mask_raises_its_success(planted: Any) -> None:
    tm, weak, x, y = _setup(planted)
    asr = lambda t: attack_success_rate(tm.predict(t.apply(x)), y, 7)  # noqa: E731
    new = refresh_trigger(tm.tape, tm.params, weak, x, 7, steps=30, lr=0.3, rng=np.random.default_rng(0))
    assert np.array_equal(new.mask, weak.mask) and new.target == 7
    assert asr(new) > asr(weak) + 0.2


def test_a_growing_mask_stays_within_its_l1_budget(planted: Any) -> None:
    tm, weak, x, _ = _setup(planted)
    new = refresh_trigger(tm.tape, tm.params, weak, x, 7, steps=20, lr=0.3, rng=np.random.default_rng(0),
                          mask_growth=1.0)
    assert new.mask.sum() <= 2.0 * weak.mask.sum() + 1e-4
    assert new.mask.min() >= 0.0 and new.mask.max() <= 1.0
