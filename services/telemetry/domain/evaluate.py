"""Judge a closed window against its baseline: the function a faust ``on_window_close`` calls."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from services.telemetry.domain.alerts import Alert, alert_id_for, plain
from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.findings import (
    Finding,
    class_view,
    drift,
    entropy_shift,
    kl_divergence,
    targeted,
)
from services.telemetry.domain.rare import rare_patterns, trigger_matches
from services.telemetry.domain.strip_signal import strip_trojaned
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats


@dataclass(frozen=True)
class WindowReport:
    """Headline metrics of the window (for ``telemetry.window-stats.v1``) and the alerts it raised."""

    metrics: dict[str, Any]
    alerts: list[Alert]

    @property
    def backdoor_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.is_backdoor]


def evaluate_window(
    stats: WindowStats, baseline: Baseline, *, model: str, version: str,
    window_start: float | None = None, window_end: float | None = None,
    thresholds: Thresholds | None = None, now: float | None = None,
) -> WindowReport:
    """Findings of one closed window.

    Args:
        stats: the window's accumulated statistics.
        baseline: the model version's baseline.
        model: model name. version: model version.
        window_start: window bounds (epoch s); default the window's event-time range.
        window_end: see ``window_start``.
        thresholds: decision thresholds (default :class:`Thresholds`).
        now: detection time stamped on alerts (default ``time.time()``).

    Returns:
        :class:`WindowReport`; alerts are sorted most severe first and have deterministic ids.
    """
    thr = thresholds or Thresholds()
    start = stats.ts_min if window_start is None else window_start
    end = stats.ts_max if window_end is None else window_end
    findings: list[Finding] = trigger_matches(stats, thr)
    judged = stats.count >= thr.min_window
    if judged:
        rare = rare_patterns(stats, baseline, thr)
        trojaned = strip_trojaned(stats, baseline, thr)
        signals = rare + ([] if trojaned is None else [trojaned])
        target = _unless_label_shift(targeted(stats, baseline, thr), signals + findings, thr)
        # a targeted finding explains the class shift it causes; only confidence findings stay
        findings += [f for f in drift(stats, baseline, thr)
                     if target is None or f.kind != "class_distribution_drift"]
        findings += _corroborate(target, signals, findings)
    counts, probs = class_view(stats, baseline)
    metrics = {**stats.summary(), "judged": judged,
               "kl_divergence": kl_divergence(counts, probs) if stats.count else None,
               **(entropy_shift(stats, baseline, thr) if stats.count else {}),
               "strip_mean": stats.strip_sum / stats.strip_count if stats.strip_count else None}
    return WindowReport(plain(metrics), _alerts(findings, stats, model, version, start, end, now))


def evaluate_triggers(stats: WindowStats, *, model: str, version: str, window_start: float, window_end: float,
                      thresholds: Thresholds | None = None, now: float | None = None) -> list[Alert]:
    """Trigger-library matches alone: they need no baseline, so they can be reported while the baseline
    is still being learnt (arguments as for :func:`evaluate_window`)."""
    findings = trigger_matches(stats, thresholds or Thresholds())
    return _alerts(findings, stats, model, version, window_start, window_end, now)


def _alerts(findings: list[Finding], stats: WindowStats, model: str, version: str, start: float, end: float,
            now: float | None) -> list[Alert]:
    """Alerts of ``findings`` (deterministic ids), most severe first."""
    detected = time.time() if now is None else now
    alerts = [Alert(alert_id_for(model, version, f.kind, start, f.key), model, version, f.kind, f.severity,
                    plain(f.evidence), start, end, stats.first_id, stats.last_id, f.target_class, detected)
              for f in findings]
    alerts.sort(key=lambda a: (-_RANK[a.severity_hint], a.kind))
    return alerts


_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _unless_label_shift(target: Finding | None, signals: list[Finding], thr: Thresholds) -> Finding | None:
    """``target``, or ``None`` when the model has fewer than ``thr.min_targeted_classes`` classes and no other
    signal names its class: with two classes a one-class rise is all a label shift is (a daily cycle of the
    class mix raised one in most windows), so the drift check reports it instead."""
    if target is None or int(target.evidence["classes"]) >= thr.min_targeted_classes:
        return target
    return target if target.target_class in {f.target_class for f in signals} else None


def _corroborate(target: Finding | None, rare: list[Finding], others: list[Finding]) -> list[Finding]:
    """Two independent backdoor signals for one class make both critical."""
    triggered = {f.target_class for f in others if f.kind == "trigger_pattern_match"}
    classes = {f.target_class for f in rare} | triggered
    out = []
    if target is not None:
        # uncorroborated, a targeted finding cannot be told from a pure label shift into one class
        # at unchanged confidence (see findings.py); it stays "high" and says so
        hit = target.target_class in classes
        out.append(dataclasses.replace(target, severity="critical" if hit else "high",
                                       evidence={**target.evidence, "corroborated": hit}))
    for f in rare:
        hit = target is not None and f.target_class == target.target_class
        out.append(dataclasses.replace(f, severity="critical" if hit else "high"))
    return out
