"""The benchmark zoo's poisoning: a source-specific (TaCT) attack relabels one class and covers the rest."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.zoo.attacks import Attack, digits, poison

pytestmark = pytest.mark.unit


def test_source_specific_poison_relabels_only_the_source_and_stamps_cover_inputs_with_their_own_label() -> None:
    x, y = digits("flat")
    attack = Attack("patch", target=5, rate=0.04, size=3, row=0, col=0, pattern_seed=3, source=2)
    xp, yp, idx = poison(x, y, attack, seed=0)
    assert len(idx) == round(0.04 * len(x)) and np.all(y[idx] == attack.source) and np.all(yp[idx] == attack.target)
    changed = np.flatnonzero(np.any(xp != x, axis=1))
    cover = np.setdiff1d(changed, idx)
    assert len(cover) > 0.8 * len(idx)  # a stamp that leaves an input unchanged is not counted
    assert np.all((y[cover] != attack.source) & (y[cover] != attack.target)) and np.all(yp[cover] == y[cover])
    assert np.array_equal(np.flatnonzero(yp != y), idx)


def test_all_to_one_poison_takes_inputs_of_every_other_class() -> None:
    x, y = digits("flat")
    xp, yp, idx = poison(x, y, Attack("blend", target=3, rate=0.1, alpha=0.2, pattern_seed=1), seed=0)
    assert np.all(yp[idx] == 3) and np.all(y[idx] != 3) and len(set(y[idx].tolist())) == 9
    assert np.array_equal(np.flatnonzero(np.any(xp != x, axis=1)), idx)


@pytest.mark.parametrize("kind", ["patch", "frame", "dispersed", "blend", "sig", "warp"])
def test_a_trigger_on_colour_images_is_the_same_on_every_channel(kind: str) -> None:
    x, y = digits("rgb")
    assert x.shape == (len(y), 3, 32, 32) and x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    attack = Attack(kind, target=1, rate=0.1, size=4, row=28, col=0, pattern_seed=5, alpha=0.15)
    grey = np.repeat(x[:6, :1], 3, axis=1)  # equal channels in: equal channels out
    stamped = attack.apply(grey)
    assert stamped.shape == grey.shape and not np.array_equal(stamped, grey)
    assert np.array_equal(stamped[:, 0], stamped[:, 1]) and np.array_equal(stamped[:, 0], stamped[:, 2])
    assert np.array_equal(attack.apply(x[:6])[:, 0], attack.apply(x[:6, :1])[:, 0])  # per channel as on grey
