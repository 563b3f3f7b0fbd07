"""Window evaluation: backdoor findings on triggered traffic, drift (lower severity) on natural drift,
silence on clean traffic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.telemetry.domain import (
    SEVERITY_RANK,
    Baseline,
    Thresholds,
    WindowStats,
    evaluate_window,
)
from services.telemetry.simulation import TRIGGER_HASH, Traffic

pytestmark = pytest.mark.unit


def _kinds(stats: WindowStats, baseline: Baseline) -> dict[str, str]:
    report = evaluate_window(stats, baseline, model="m", version="1")
    return {a.kind: a.severity_hint for a in report.alerts}


def test_clean_traffic_raises_no_backdoor_alert_over_many_windows_seeds_and_class_counts() -> None:
    windows = backdoor = drift = 0
    for k, seed in itertools.product((3, 10, 50), (11, 12)):
        traffic = Traffic(k, seed, imbalanced=seed % 2 == 0)
        baseline = traffic.baseline()
        for _ in range(200):
            report = evaluate_window(traffic.window(400, batch_size=400), baseline, model="m", version="1")
            windows += 1
            backdoor += bool(report.backdoor_alerts)
            drift += len(report.alerts) - len(report.backdoor_alerts)
    assert windows == 1200
    assert backdoor / windows <= 0.005, f"backdoor false-alarm rate {backdoor / windows:.4f}"
    assert drift / windows <= 0.01, f"drift false-alarm rate {drift / windows:.4f}"


# two balanced classes: +2.5 points of share needs ~20k predictions to clear alpha=1e-4 against a
# 10k-prediction baseline; more classes make the same 5% stand out in 3k
@pytest.mark.parametrize(("k", "imbalanced", "size"),
                         [(2, False, 20_000), (10, False, 3000), (10, True, 3000), (100, True, 3000)])
def test_five_percent_triggered_traffic_yields_targeted_and_rare_pattern_alerts(
        k: int, imbalanced: bool, size: int) -> None:
    traffic = Traffic(k, seed=21, imbalanced=imbalanced)
    baseline = traffic.baseline()
    target = int(np.argmin(traffic.priors[:5]))  # a small class is the hardest to see surge
    report = evaluate_window(traffic.window(size, trigger_rate=0.05, target=target), baseline,
                             model="m", version="1")
    by_kind = {a.kind: a for a in report.alerts}
    assert by_kind["targeted_misclassification"].target_class == target
    assert by_kind["targeted_misclassification"].severity_hint == "critical"
    rare = by_kind["rare_input_pattern"]
    assert rare.target_class == target
    top = rare.evidence["patterns"][0]
    assert top["pattern"].startswith("b15:") and top["class"] == target and top["consistency"] > 0.95
    assert len(top["example_prediction_ids"]) == 3
    assert "class_distribution_drift" not in by_kind
    assert TRIGGER_HASH  # the simulator's trigger block is the one reported


def test_natural_drift_is_reported_as_drift_with_lower_severity_and_no_backdoor_alert() -> None:
    for k, seed in ((5, 31), (10, 32), (40, 33)):
        traffic = Traffic(k, seed)
        baseline = traffic.baseline()
        shifted = traffic.rng.dirichlet(np.ones(k))
        report = evaluate_window(traffic.window(3000, priors=shifted, margin=3.0), baseline,
                                 model="m", version="1")
        assert report.alerts, f"k={k}: drift not seen"
        assert not report.backdoor_alerts, [a.kind for a in report.alerts]
        assert max(SEVERITY_RANK[a.severity_hint] for a in report.alerts) <= SEVERITY_RANK["medium"]


def test_one_class_surging_while_others_shift_unevenly_is_drift_not_targeted() -> None:
    traffic = Traffic(6, seed=41)
    baseline = traffic.baseline()
    priors = np.array([0.40, 0.30, 0.05, 0.05, 0.10, 0.10])  # baseline is near uniform
    kinds = _kinds(traffic.window(3000, priors=priors), baseline)
    assert "class_distribution_drift" in kinds and "targeted_misclassification" not in kinds


def test_small_windows_are_not_judged() -> None:
    traffic = Traffic(10, seed=51)
    baseline = traffic.baseline()
    stats = traffic.window(150, trigger_rate=0.5, target=1)
    report = evaluate_window(stats, baseline, model="m", version="1")
    assert report.metrics["judged"] is False and report.alerts == []


def test_alert_ids_are_stable_for_a_replayed_window_and_alerts_are_json_able() -> None:
    import json
    traffic = Traffic(10, seed=61)
    baseline = traffic.baseline()
    stats = traffic.window(2000, trigger_rate=0.05, target=3)
    first = evaluate_window(stats, baseline, model="m", version="1", window_start=0.0, window_end=60.0)
    again = evaluate_window(stats, baseline, model="m", version="1", window_start=0.0, window_end=60.0)
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in again.alerts]
    import orjson
    for alert in first.alerts:
        wire = json.loads(orjson.dumps(alert.to_dict()))  # plain Python numbers, no numpy scalars
        assert wire["first_prediction_id"] and wire["last_prediction_id"]
        assert (wire["window_start"], wire["window_end"]) == (0.0, 60.0)


def test_trigger_library_matches_in_the_signature_raise_a_critical_alert() -> None:
    traffic = Traffic(10, seed=71)
    baseline = traffic.baseline()
    batch = traffic.batch(300)
    sig = [s + "!nc-class7" if i < 5 else s for i, s in enumerate(batch.sig)]
    batch.pred[:5] = 7
    stats = WindowStats(10)
    stats.add(type(batch)(**{**batch.__dict__, "sig": sig}))
    report = evaluate_window(stats, baseline, model="m", version="1")
    match = [a for a in report.alerts if a.kind == "trigger_pattern_match"]
    assert len(match) == 1 and match[0].severity_hint == "critical" and match[0].target_class == 7
    assert match[0].evidence["matches"] == 5


def test_supplied_baseline_without_sketch_still_finds_the_targeted_attack() -> None:
    traffic = Traffic(10, seed=81)
    learnt = traffic.baseline()
    supplied = Baseline.supplied(learnt.class_probs(), learnt.conf_mean, learnt.conf_std,
                                 learnt.ent_mean, learnt.ent_std)
    kinds = _kinds(traffic.window(3000, trigger_rate=0.05, target=4), supplied)
    assert kinds.get("targeted_misclassification") == "high"


def test_thresholds_reject_inconsistent_values_naming_them() -> None:
    with pytest.raises(ValueError, match="kl_alert"):
        Thresholds(kl_drift=0.2, kl_alert=0.1)
    with pytest.raises(ValueError, match="alpha"):
        Thresholds(alpha=0.0)
