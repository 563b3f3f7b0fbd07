"""Bounded memory: count-min sketch and the per-window pattern summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.telemetry.domain import CountMinSketch, PatternSummary

pytestmark = pytest.mark.unit


def test_sketch_memory_does_not_grow_with_distinct_keys_and_never_undercounts() -> None:
    sketch = CountMinSketch(width=1024, depth=4)
    before = sketch.nbytes
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**40, size=200_000, dtype=np.uint64)
    sketch.add(keys)
    heavy = np.full(500, 12345, dtype=np.uint64)
    sketch.add(heavy)
    assert sketch.nbytes == before == 1024 * 4 * 4
    assert sketch.query(np.array([12345], dtype=np.uint64))[0] >= 500
    est = sketch.query(keys[:1000])
    assert (est >= 1).all()
    assert np.median(est) <= 2 * 200_000 / 1024 * np.e  # within the e/width * total bound typically


def test_sketch_merges_and_round_trips_through_json() -> None:
    a, b = CountMinSketch(256, 3), CountMinSketch(256, 3)
    a.add(np.arange(100, dtype=np.uint64))
    b.add(np.arange(50, 150, dtype=np.uint64))
    merged = CountMinSketch.from_dict(json.loads(json.dumps(a.merge(b).to_dict())))
    assert merged.total_ == 200
    assert merged.query(np.array([75], dtype=np.uint64))[0] >= 2


def test_sketch_rejects_a_width_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="width=1000"):
        CountMinSketch(width=1000)


def test_pattern_summary_stays_within_capacity_and_keeps_the_heavy_component() -> None:
    rng = np.random.default_rng(2)
    summary = PatternSummary(capacity=64)
    for step in range(40):
        hashes = rng.integers(1, 2**24, size=(500, 16), dtype=np.uint32)
        hashes[:10, 15] = 777  # 2% of inputs, always class 3
        preds = rng.integers(0, 10, size=500)
        preds[:10] = 3
        summary.update(hashes, preds, [f"s{step}-{i}" for i in range(500)])
        assert len(summary) <= 64
    key = (15 << 24) | 777
    i = int(np.flatnonzero(summary.keys == key)[0])
    assert summary.seen[i] == 400 and summary.top_class[i] == 3 and summary.top_count[i] == 400
    assert summary.examples[i] == ["s0-0", "s1-0", "s2-0"]  # first occurrence of each batch
    assert len(json.dumps(summary.to_dict())) < 64 * 200


def test_a_component_recurring_across_messages_of_two_predictions_is_tracked() -> None:
    # a plain client at low traffic: two predictions per message, a trigger block in 5% of them; the
    # summary gathers 64 predictions before it drops components seen once, so the trigger recurs there
    rng = np.random.default_rng(5)
    summary = PatternSummary(capacity=256)
    hit_total = 0
    for step in range(400):
        hashes = rng.integers(1, 2**24, size=(2, 16), dtype=np.uint32)
        preds = rng.integers(0, 10, size=2)
        hit = rng.random(2) < 0.05
        hashes[hit, 15], preds[hit] = 777, 3
        hit_total += int(hit.sum())
        summary.update(hashes, preds, [f"m{step}-{i}" for i in range(2)])
        assert summary.pending_rows < 64
    summary.flush()
    assert summary.pending_rows == 0
    i = int(np.flatnonzero(summary.keys == ((15 << 24) | 777))[0])
    assert summary.top_class[i] == 3 and summary.seen[i] >= hit_total - 2  # at most one flush's single sighting lost
    assert len(summary) <= 256


def test_predictions_held_back_survive_a_json_round_trip_and_a_merge() -> None:
    rng = np.random.default_rng(6)
    left, right = PatternSummary(), PatternSummary()
    for summary, n in ((left, 30), (right, 40)):
        hashes = rng.integers(1, 2**24, size=(n, 16), dtype=np.uint32)
        hashes[:3, 15] = 777
        summary.update(hashes, np.full(n, 3), [str(x) for x in range(n)])
    assert (left.pending_rows, len(left)) == (30, 0)  # held back: fewer than 64
    again = PatternSummary.from_dict(json.loads(json.dumps(left.to_dict())))
    assert again.pending_rows == 30 and again.to_dict() == left.to_dict()
    merged = again.merge(right)  # 70 predictions together: added, and the 6 sightings recur
    assert merged.pending_rows == 0
    i = int(np.flatnonzero(merged.keys == ((15 << 24) | 777))[0])
    assert merged.seen[i] == 6 and merged.top_class[i] == 3
