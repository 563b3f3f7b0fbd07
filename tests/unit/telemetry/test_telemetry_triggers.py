"""Trigger-pattern library: stamped inputs match, clean inputs do not, capacity is bounded."""

from __future__ import annotations

import numpy as np
import pytest

from services.telemetry.domain.triggers import TriggerLibrary, TriggerPattern

pytestmark = pytest.mark.unit


def _corner(pid: str, value: float) -> TriggerPattern:
    mask = np.zeros((3, 16, 16), dtype=np.float32)
    mask[:, 12:, 12:] = 1.0
    return TriggerPattern(pid, mask, np.full((3, 16, 16), value, dtype=np.float32), target_class=7)


def test_stamped_inputs_match_their_pattern_and_clean_inputs_match_none() -> None:
    lib = TriggerLibrary(tolerance=0.1)
    lib.add(_corner("white", 1.0))
    lib.add(_corner("grey", 0.5))
    rng = np.random.default_rng(1)
    x = rng.random((200, 3, 16, 16)).astype(np.float32)
    x[:50, :, 12:, 12:] = 1.0
    found = lib.match(x)
    assert found[:50] == ["white"] * 50
    assert found[50:] == [""] * 150


def test_library_refuses_more_than_its_capacity_and_other_shapes() -> None:
    lib = TriggerLibrary(max_patterns=2)
    lib.add(_corner("a", 1.0))
    lib.add(_corner("b", 0.0))
    lib.add(_corner("a", 0.2))  # same id replaces
    assert len(lib) == 2
    with pytest.raises(ValueError, match="library full"):
        lib.add(_corner("c", 0.3))
    other = TriggerPattern("d", np.ones((10,), np.float32), np.ones((10,), np.float32))
    with pytest.raises(ValueError, match="shape"):
        TriggerLibrary().add(_corner("a", 1.0)) or lib.add(other)


def test_a_thousand_patterns_match_a_batch_in_one_pass() -> None:
    lib = TriggerLibrary(max_patterns=1000)
    rng = np.random.default_rng(2)
    for i in range(1000):
        mask = np.zeros(256, dtype=np.float32)
        mask[rng.choice(256, 9, replace=False)] = 1.0
        lib.add(TriggerPattern(f"p{i}", mask, rng.random(256).astype(np.float32)))
    assert len(lib.match(rng.random((100, 256)))) == 100
