"""Runtime STRIP entropies: a class suddenly receiving blend-resistant inputs is flagged, clean is not."""

from __future__ import annotations

import pytest

from services.telemetry.domain.evaluate import evaluate_window
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig, ingest
from services.telemetry.simulation import Traffic

BACKDOOR = {"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match", "strip_trojaned_inputs"}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_clean_traffic_with_strip_entropies_raises_no_strip_finding(seed: int) -> None:
    traffic = Traffic(10, seed=seed, imbalanced=seed % 2 == 0)
    baseline = _baseline(traffic)
    for _ in range(10):
        report = evaluate_window(traffic.window(2000, strip=True), baseline, model="m", version="1")
        assert "strip_trojaned_inputs" not in {a.kind for a in report.alerts}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_blended_trigger_that_leaves_no_signature_is_caught_by_strip(seed: int) -> None:
    traffic = Traffic(10, seed=seed)
    baseline = _baseline(traffic)
    window = traffic.window(2000, trigger_rate=0.03, target=6, trigger_kind="blend", strip=True)
    report = evaluate_window(window, baseline, model="m", version="1")
    strip = [a for a in report.alerts if a.kind == "strip_trojaned_inputs"]
    assert [a.target_class for a in strip] == [6]
    assert strip[0].evidence["low_strip_predictions"] >= 40 and strip[0].severity_hint in {"high", "critical"}
    assert not [a for a in report.alerts if a.kind == "rare_input_pattern"]  # the signature path is blind here


def test_strip_histograms_survive_the_changelog_and_merge_exactly() -> None:
    traffic = Traffic(10, seed=9)
    a, b = traffic.window(1000, strip=True), traffic.window(1000, strip=True)
    merged = a.merge(b)
    assert a.strip_hist is not None and b.strip_hist is not None and merged.strip_hist is not None
    assert (merged.strip_hist == a.strip_hist + b.strip_hist).all() and merged.strip_hist.sum() == 2000
    assert (WindowStats.from_dict(merged.to_dict()).strip_hist == merged.strip_hist).all()


def test_no_strip_values_means_no_strip_signal_and_no_state_for_it() -> None:
    traffic = Traffic(10, seed=4)
    window = traffic.window(2000, trigger_rate=0.05, target=2, trigger_kind="blend")
    assert window.strip_hist is None
    report = evaluate_window(window, traffic.baseline(5000), model="m", version="1", thresholds=Thresholds())
    assert "strip_trojaned_inputs" not in {a.kind for a in report.alerts}


def test_the_monitor_reports_a_blended_campaign_through_strip() -> None:
    traffic, state = Traffic(10, seed=21), MonitorState("m", "1")
    cfg = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=5_000, early_eval_s=0.0)
    for i in range(20):
        ingest(state, traffic.batch(500, strip=True), 0, i, now=0.0, cfg=cfg)
    kinds = set()
    for i in range(20, 30):
        out = ingest(state, traffic.batch(500, trigger_rate=0.05, target=1, trigger_kind="blend", strip=True), 0, i,
                     now=0.0, cfg=cfg)
        kinds |= {a.kind for a in out.alerts}
    assert "strip_trojaned_inputs" in kinds and kinds <= BACKDOOR | {"class_distribution_drift", "confidence_drop"}


def _baseline(traffic: Traffic):  # type: ignore[no-untyped-def]
    from services.telemetry.domain import BaselineBuilder

    builder = BaselineBuilder(10_000)
    while not builder.ready:
        builder.add(traffic.batch(500, strip=True))
    return builder.build()
