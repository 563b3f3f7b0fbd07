"""Whether a reversed trigger looks like its own class's clean inputs (planted vs natural triggers)."""

from __future__ import annotations

import numpy as np
import pytest

from services.scanner.domain.detectors.likeness import class_likeness, foreign_index
from services.scanner.domain.model import Dataset

pytestmark = pytest.mark.unit

K, SIDE = 5, 8


def _strokes(channels: int | None, seed: int = 0) -> Dataset:
    """Class j has ink in column j (plus noise); nothing ever has ink in the bottom-right corner."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), 30)
    x = rng.uniform(0.0, 0.2, (len(y), SIDE, SIDE))
    x[np.arange(len(y)), :, y] += 0.8
    x[:, SIDE - 2:, SIDE - 2:] = 0.0
    if channels is None:
        return Dataset(x.reshape(len(y), -1).astype(np.float32), y)
    return Dataset(np.repeat(x[:, None], channels, axis=1).astype(np.float32), y)


def _triggers(planted: int, channels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Natural triggers (each class's own column, inked) and, for ``planted``, an inked corner patch."""
    masks = np.zeros((K, SIDE, SIDE), dtype=np.float32)
    patterns = np.zeros((K, SIDE, SIDE), dtype=np.float32)
    for c in range(K):
        masks[c, 2:6, c] = 1.0
        patterns[c, :, c] = 1.0
    masks[planted] = 0.0
    masks[planted, SIDE - 2:, SIDE - 2:] = 1.0
    patterns[planted, SIDE - 2:, SIDE - 2:] = 1.0
    if channels is None:
        return masks.reshape(K, -1), patterns.reshape(K, -1)
    return masks, np.repeat(patterns[:, None], channels, axis=1)


@pytest.mark.parametrize("channels", [None, 1, 3], ids=["flat", "grey", "colour"])
def test_a_planted_corner_patch_is_the_trigger_least_like_its_class(channels: int | None) -> None:
    data = _strokes(channels)
    masks, patterns = _triggers(planted=3, channels=channels)
    likeness = class_likeness(data, masks, patterns)
    assert np.all(np.delete(likeness, 3) > 0.8)  # an inked column looks like that class's images
    assert abs(likeness[3]) < 0.3  # the corner is blank in every image: nothing to look like
    index = foreign_index(likeness)
    assert int(np.argmax(index)) == 3 and index[3] > 3.0


def test_the_same_triggers_without_a_planted_one_single_out_no_class() -> None:
    data = _strokes(None, seed=1)
    masks, patterns = _triggers(planted=0, channels=None)
    masks[0], patterns[0] = 0.0, 0.0
    masks[0].reshape(SIDE, SIDE)[2:6, 0] = 1.0
    patterns[0].reshape(SIDE, SIDE)[:, 0] = 1.0
    assert foreign_index(class_likeness(data, masks, patterns)).max() < 2.0


def test_a_class_without_clean_inputs_scores_zero() -> None:
    data = _strokes(None)
    keep = data.y != 2
    likeness = class_likeness(Dataset(data.x[keep], data.y[keep]), *_triggers(planted=3, channels=None))
    assert np.isnan(likeness[2])
    index = foreign_index(likeness)
    assert index[2] == 0.0 and int(np.argmax(index)) == 3
