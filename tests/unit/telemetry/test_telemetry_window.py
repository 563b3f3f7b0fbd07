"""Window accumulator: vectorised per batch, exactly mergeable, JSON-able for faust tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.telemetry.domain import PredictionBatch, WindowStats
from services.telemetry.simulation import Traffic

pytestmark = pytest.mark.unit


def _scalars(stats: WindowStats) -> dict[str, object]:
    d = stats.to_dict()
    d.pop("patterns")
    return d


def test_merging_two_halves_equals_accumulating_everything_at_once() -> None:
    traffic = Traffic(10, seed=3)
    batches = [traffic.batch(250, trigger_rate=0.05, target=2) for _ in range(8)]
    whole, left, right = WindowStats(10), WindowStats(10), WindowStats(10)
    for i, b in enumerate(batches):
        whole.add(b)
        (left if i % 2 else right).add(b)
    merged = left.merge(right)
    a, b = _scalars(merged), _scalars(whole)
    for key in ("conf_sum", "conf_sumsq", "ent_sum", "ent_sumsq"):
        assert a.pop(key) == pytest.approx(b.pop(key))
    assert np.allclose(a.pop("class_conf_sum"), b.pop("class_conf_sum"))  # type: ignore[arg-type]
    assert a == b
    trigger_key = (15 << 24) | 0xABCDEF
    for stats in (merged, whole):
        i = int(np.flatnonzero(stats.patterns.keys == trigger_key)[0])
        assert stats.patterns.top_class[i] == 2


def test_window_state_round_trips_through_json() -> None:
    stats = Traffic(5, seed=4).window(1200)
    again = WindowStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.to_dict() == stats.to_dict()


def test_window_reports_ids_of_earliest_and_latest_event_time() -> None:
    batch = Traffic(3, seed=5).batch(100)
    stats = WindowStats(3)
    stats.add(batch)
    assert (stats.first_id, stats.last_id) == ("p0", "p99")
    assert stats.ts_min == batch.ts[0] and stats.ts_max == batch.ts[-1]


def test_window_grows_when_a_batch_reports_more_classes() -> None:
    small, large = Traffic(3, seed=6).batch(50), Traffic(7, seed=7).batch(50)
    stats = WindowStats()
    stats.add(small)
    stats.add(large)
    assert stats.n_classes == 7 and stats.count == 100
    assert stats.class_counts.sum() == 100


def test_wire_batches_with_mismatched_columns_are_rejected_with_the_column_named() -> None:
    wire = Traffic(3, seed=8).batch(10).to_wire()
    wire["conf"] = wire["conf"][:-1]
    with pytest.raises(ValueError, match="conf"):
        PredictionBatch.from_wire(wire)


def test_wire_batch_round_trips_with_null_strip_entries() -> None:
    batch = Traffic(3, seed=9).batch(4)
    wire = batch.to_wire()
    wire["strip"] = [0.5, None, 0.1, 0.2]
    again = PredictionBatch.from_wire(wire)
    assert again.strip is not None and np.isnan(again.strip[1])
    assert again.ids == batch.ids and np.array_equal(again.pred, batch.pred)


def test_accumulating_through_json_table_state_equals_accumulating_in_memory() -> None:
    import orjson

    from services.telemetry.domain import accumulate
    traffic = Traffic(4, seed=10)
    batches = [traffic.batch(200, trigger_rate=0.1, target=1) for _ in range(5)]
    state = None
    direct = WindowStats(4)
    for b in batches:
        state = orjson.loads(orjson.dumps(accumulate(state, b)))
        direct.add(b)
    assert state == orjson.loads(orjson.dumps(direct.to_dict()))


def test_baseline_builder_takes_exactly_its_target_and_survives_a_restart() -> None:
    from services.telemetry.domain import Baseline, BaselineBuilder
    traffic = Traffic(5, seed=11)
    builder = BaselineBuilder(target=1000)
    assert builder.add(traffic.batch(700)) == 700
    builder = BaselineBuilder.from_dict(json.loads(json.dumps(builder.to_dict())))
    assert builder.add(traffic.batch(700)) == 300 and builder.ready
    assert builder.add(traffic.batch(10)) == 0
    baseline = Baseline.from_dict(json.loads(json.dumps(builder.build().to_dict())))
    assert baseline.n == 1000 and baseline.class_counts.sum() == 1000
    assert baseline.sketch is not None and baseline.sketch_n == 1000
    assert baseline.class_probs().sum() == pytest.approx(1.0)
