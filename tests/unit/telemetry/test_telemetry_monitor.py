"""The per-model-version monitor the faust agent calls per batch (no broker needed)."""

from __future__ import annotations

import math

import pytest

from services.telemetry.service_layer.monitor import MonitorState, WindowConfig, ingest, ingest_many
from services.telemetry.simulation import Traffic

CFG = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=2_000, early_eval_s=0.0)
BACKDOOR = {"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match"}


def _feed(state: MonitorState, traffic: Traffic, batches: int, start_offset: int, cfg: WindowConfig = CFG,
          **kw: object) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(batches):
        out.append(ingest(state, traffic.batch(500, **kw), 0, start_offset + i, now=0.0, cfg=cfg))  # type: ignore[arg-type]
    return out


def test_a_redelivered_batch_is_not_counted_twice() -> None:
    traffic, state = Traffic(10, seed=1), MonitorState("m", "1")
    batch = traffic.batch(500)
    ingest(state, batch, 0, 7, now=0.0, cfg=CFG)
    assert ingest(state, batch, 0, 7, now=0.0, cfg=CFG).skipped_duplicate
    assert state.builder is not None and state.builder.stats.count == 500


def test_windows_close_with_exact_counts_and_expire_from_state() -> None:
    traffic, state = Traffic(10, seed=2), MonitorState("m", "1")
    outs = _feed(state, traffic, 4 + 40, 0)  # 2k baseline, then 20k predictions = 20 windows of 1,000
    closed = [w for o in outs for w in o.closed]
    assert len(closed) == 19 and {w.stats.count for w in closed} == {1000}
    assert len(state.windows) == 1  # only the open window is kept: memory stays bounded


def test_hopping_windows_count_each_prediction_in_every_window_that_covers_it() -> None:
    cfg = WindowConfig(window_s=10.0, step_s=5.0, lateness_s=0.0, baseline_size=2_000, early_eval_s=0.0)
    traffic, state = Traffic(10, seed=3), MonitorState("m", "1")
    outs = _feed(state, traffic, 4 + 40, 0, cfg=cfg)
    full = [w for o in outs for w in o.closed if w.stats.count == 1000]
    assert len(full) >= 30 and all(w.end - w.start == 10.0 for w in full)


def test_the_state_round_trips_through_its_changelog_form() -> None:
    traffic, state = Traffic(10, seed=4), MonitorState("m", "1")
    _feed(state, traffic, 10, 0)
    again = MonitorState.from_dict(state.to_dict())
    assert again.offsets == state.offsets and set(again.windows) == set(state.windows)
    assert again.watermark == state.watermark and again.baseline is None  # the baseline has its own table


@pytest.mark.parametrize("attack", [False, True])
def test_a_scheduled_baseline_refresh_learns_only_from_traffic_without_backdoor_findings(attack: bool) -> None:
    cfg = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=2_000, early_eval_s=0.0,
                       baseline_refresh_s=30.0)
    traffic, state = Traffic(10, seed=5), MonitorState("m", "1")
    _feed(state, traffic, 4, 0, cfg=cfg)
    first = state.baseline
    kw = {"trigger_rate": 0.2, "target": 3} if attack else {}
    outs = _feed(state, traffic, 30, 100, cfg=cfg, **kw)
    refreshed = any(o.baseline_changed for o in outs)
    assert refreshed is not attack
    assert (state.baseline is first) is attack
    assert not math.isinf(state.baseline_at)
    if attack:
        assert {a.kind for o in outs for a in o.alerts} & BACKDOOR


@pytest.mark.parametrize("attack", [False, True])
def test_low_rate_traffic_is_judged_over_several_small_windows(attack: bool) -> None:
    # 5 predictions/s: a 10 s window holds 50, a quarter of what one window needs to be judged
    traffic, state = Traffic(10, seed=6, spacing_s=0.2), MonitorState("m", "1")
    _feed(state, traffic, 4, 0)
    kw = {"trigger_rate": 0.1, "target": 4} if attack else {}
    alerts = [a for o in _feed(state, traffic, 8, 100, **kw) for a in o.alerts]
    kinds = {a.kind for a in alerts}
    if attack:
        assert kinds & BACKDOOR and {a.target_class for a in alerts if a.kind in BACKDOOR} == {4}
    else:
        assert not kinds & BACKDOOR
    assert all(w.count < 200 for w in state.windows.values())


def test_a_batch_written_twice_by_a_retrying_producer_is_counted_once() -> None:
    traffic, state = Traffic(10, seed=7), MonitorState("m", "1")
    batch = traffic.batch(500)
    ingest(state, batch, 0, 1, now=0.0, cfg=CFG)
    assert ingest(state, batch, 0, 2, now=0.0, cfg=CFG).skipped_duplicate  # same batch id, next offset
    assert state.builder is not None and state.builder.stats.count == 500


def test_a_group_of_batches_counts_like_the_same_batches_one_by_one() -> None:
    one, grouped = Traffic(10, seed=8), Traffic(10, seed=8)
    state_one, state_grouped = MonitorState("m", "1"), MonitorState("m", "1")
    closed_one = [w for o in _feed(state_one, one, 4 + 30, 0) for w in o.closed]
    batches = [grouped.batch(500) for _ in range(4 + 30)]
    closed_grouped = []
    for first in range(0, len(batches), 8):  # groups straddle window boundaries
        items = [(b, 0, first + i) for i, b in enumerate(batches[first:first + 8])]
        closed_grouped += ingest_many(state_grouped, items, now=0.0, cfg=CFG).closed
    assert [(w.start, w.stats.count) for w in closed_grouped] == [(w.start, w.stats.count) for w in closed_one]
    assert {w.stats.count for w in closed_grouped} == {1000}
    assert state_grouped.offsets == {0: len(batches) - 1}


def test_a_group_skips_redelivered_and_retried_batches_within_and_across_groups() -> None:
    traffic, state = Traffic(10, seed=9), MonitorState("m", "1")
    a, b, c = traffic.batch(500), traffic.batch(500), traffic.batch(500)
    ingest_many(state, [(a, 0, 1), (b, 0, 2), (b, 0, 3)], now=0.0, cfg=CFG)  # b retried by its producer
    assert state.builder is not None and state.builder.stats.count == 1000
    ingest_many(state, [(b, 0, 2), (c, 0, 4)], now=0.0, cfg=CFG)  # b redelivered after a crash
    assert state.builder.stats.count == 1500
    assert ingest_many(state, [(a, 0, 1), (c, 0, 4)], now=0.0, cfg=CFG).skipped_duplicate


def test_a_batch_that_makes_the_monitor_fail_is_not_remembered_as_counted() -> None:
    traffic, state = Traffic(10, seed=10), MonitorState("m", "1")
    ingest(state, traffic.batch(500), 0, 1, now=0.0, cfg=CFG)
    odd = Traffic(7, seed=10).batch(500)  # same model version, other class count: cannot be merged
    with pytest.raises(ValueError):
        ingest_many(state, [(traffic.batch(500), 0, 2), (odd, 0, 3)], now=0.0, cfg=CFG)
    assert state.offsets == {0: 1}
