"""Neural Cleanse v2's persistence cue: a planted trigger survives superimposition, a natural edit does not."""

from __future__ import annotations

import numpy as np
import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import create
from services.scanner.domain.detectors.neural_cleanse import anomaly_index, persistence

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit


def _true_trigger() -> tuple[np.ndarray, np.ndarray]:
    """The planted patch as a Neural Cleanse (mask, pattern) for every class, the same for each."""
    mask = np.zeros((8, 8), np.float32)
    mask[ATTACK.row:ATTACK.row + ATTACK.size, ATTACK.col:ATTACK.col + ATTACK.size] = 1.0
    pattern = ATTACK.apply(np.zeros((1, 64), np.float32))[0]
    return np.repeat(mask.reshape(1, 64), 10, axis=0), np.repeat(pattern[None], 10, axis=0)


def test_the_planted_trigger_keeps_blended_inputs_on_the_target_of_the_backdoored_model_only(zoo: Zoo) -> None:
    masks, patterns = _true_trigger()
    clean = load_npz(zoo.clean_npz)
    rng = np.random.default_rng(0)
    bd = persistence(open_model(zoo.backdoored_model), clean, masks, patterns, 0.5, rng)
    ok = persistence(open_model(zoo.clean_model), clean, masks, patterns, 0.5, rng)
    assert bd.shape == (10,) and bd[ATTACK.target] > 0.5
    assert ok[ATTACK.target] < 0.2 and bd[ATTACK.target] > ok[ATTACK.target] + 0.4


def test_persistence_joins_the_mask_size_index_and_can_outvote_a_naturally_small_mask() -> None:
    l1 = np.array([10.0, 9.0, 5.0, 9.5, 10.5, 9.8, 10.2, 6.0, 9.7, 10.1])  # class 2 naturally small
    persist = np.array([0.05, 0.04, 0.02, 0.06, 0.05, 0.03, 0.04, 0.6, 0.05, 0.04])  # class 7 persists
    assert anomaly_index(l1)[1][0] == 2
    score, ranking = anomaly_index(l1, persist)
    assert ranking[0] == 7 and score > anomaly_index(l1)[0] / 2


def test_persistence_is_reported_per_class_and_can_be_turned_off(zoo: Zoo) -> None:
    model, clean = open_model(zoo.backdoored_model), load_npz(zoo.clean_npz)
    on = create("neural_cleanse.v2", steps=60).fit(model, clean).result()
    off = create("neural_cleanse.v2", steps=60, persistence_alpha=0.0).fit(model, clean).result()
    assert len(on.evidence["persistence"]) == 10 and off.evidence["persistence"] is None
    with pytest.raises(ValueError, match=r"persistence_alpha=1\.0"):
        create("neural_cleanse.v2", persistence_alpha=1.0)
