"""Pure pieces: configuration checks, split, pruning order and schedule, triggers, report bar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.remediation.domain.fine_pruning import (
    RemediationConfig,
    progressive_prune,
    split_indices,
    unit_order,
)
from services.remediation.domain.report import PrunedLayer, RemediationReport
from services.remediation.domain.trigger import Trigger, attack_success_rate, infer_target

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("field", "value"), [("max_accuracy_drop", 1.5), ("holdout_fraction", 0.0),
                                              ("epochs", -1), ("temperature", 0.0), ("distill", -0.1)])
def test_config_rejects_a_bad_value_and_names_it(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RemediationConfig(**{field: value})  # type: ignore[arg-type]


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    y = np.repeat(np.arange(5), 20)
    tune, hold = split_indices(y, 0.5, seed=3)
    assert set(tune).isdisjoint(hold) and len(tune) + len(hold) == len(y)
    assert np.all(np.bincount(y[hold]) == 10)
    assert np.array_equal(hold, split_indices(y, 0.5, seed=3)[1])
    assert not np.array_equal(hold, split_indices(y, 0.5, seed=4)[1])


def test_dormant_units_come_first_without_a_trigger() -> None:
    assert list(unit_order(np.array([0.5, 0.0, 2.0, 0.1]))) == [1, 3, 0, 2]


def test_units_the_trigger_excites_come_first_with_a_trigger() -> None:
    clean, stamped = np.array([0.5, 0.0, 2.0, 0.1]), np.array([0.5, 3.0, 2.0, 0.2])
    assert list(unit_order(clean, stamped)[:2]) == [1, 3]


def test_progressive_pruning_stops_before_the_unit_that_breaks_the_budget() -> None:
    acc = {0: 0.95, 1: 0.94, 2: 0.90, 3: 0.5}
    pruned = progressive_prune(np.array([3, 1, 0, 2]), lambda p: acc[len(p) - 1], 0.95, 0.05, 10)
    assert pruned == [3, 1, 0]
    assert progressive_prune(np.array([3, 1, 0, 2]), lambda p: 0.95, 0.95, 0.05, 2) == [3, 1]


def test_a_trigger_stamps_mask_times_pattern_and_measures_success() -> None:
    mask = np.zeros((1, 4, 4), np.float32)
    mask[0, 0, 0] = 1.0
    t = Trigger(mask[0], np.full((1, 4, 4), 0.7, np.float32), target=2)
    x = np.zeros((3, 1, 4, 4), np.float32)
    out = t.apply(x)
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.7] * 3) and out.sum() == pytest.approx(2.1)
    assert infer_target(np.array([2, 2, 1]), 3) == 2
    assert attack_success_rate(np.array([2, 2, 1, 2]), np.array([0, 1, 0, 2]), 2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Trigger(mask * 2, mask)


def _report(acc_after: float, asr_after: float | None) -> RemediationReport:
    return RemediationReport("m.onnx", "a" * 64, "o.onnx", "b" * 64, PrunedLayer("h", "dense", 8, [1], "dormant"),
                             0.95, acc_after, None if asr_after is None else 1.0, asr_after, 3, None, False,
                             100, 100, 0.02, 0.05, 0)


def test_the_bar_needs_a_measured_low_asr_and_a_small_accuracy_drop() -> None:
    assert _report(0.94, 0.01).meets_bar
    assert not _report(0.92, 0.01).meets_bar
    assert not _report(0.95, 0.06).meets_bar
    assert not _report(0.95, None).meets_bar  # no trigger: the ASR is unknown, so the bar is not certified
    d = json.loads(json.dumps(_report(0.95, None).to_dict()))
    assert d["asr_checked"] is False and d["pruned"]["indices"] == [1]
