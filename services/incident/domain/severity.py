"""Severity classes of the control card and how an alert maps onto them (pure).

critical: confirmed backdoor in a production model, respond < 15 min
high:     suspected backdoor in pre-production, < 2 h
medium:   supply-chain or scan detection, < 24 h
low:      false positive / research finding / natural drift, < 1 week
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


RESPOND_WITHIN_S = {Severity.CRITICAL: 15 * 60, Severity.HIGH: 2 * 3600, Severity.MEDIUM: 24 * 3600,
                    Severity.LOW: 7 * 24 * 3600}

RESPONDERS = {
    Severity.CRITICAL: ("ml-security-oncall", "incident-commander", "model-owner", "ciso"),
    Severity.HIGH: ("ml-security-oncall", "model-owner"),
    Severity.MEDIUM: ("ml-security-team", "model-owner"),
    Severity.LOW: ("model-owner",),
}

# alert kinds that point at a backdoor being used, as opposed to ordinary drift
BACKDOOR_KINDS = frozenset({"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match",
                            "strip_trojaned_inputs", "backdoor_detected", "responder_confirmed"})
DRIFT_KINDS = frozenset({"class_distribution_drift", "confidence_drop", "performance_degradation"})

# alert kinds read off the same evidence: a window's class histogram moves both the drift and the targeted
# check, so together they are one signal, not two (a benign change of class mix, a daily cycle, raises both)
EVIDENCE_FAMILY = {"class_distribution_drift": "class_histogram", "targeted_misclassification": "class_histogram"}

# how much one alert of a given hint says on its own; independent signals combine by noisy-OR
HINT_CONFIDENCE = {"critical": 0.9, "high": 0.75, "medium": 0.5, "low": 0.25, "info": 0.1}


@dataclass(frozen=True)
class Signal:
    """What the incident service needs of an alert."""

    alert_id: str
    kind: str
    source: str
    severity_hint: str
    detected_at: float
    in_production: bool


def signal_confidence(signal: Signal) -> float:
    return HINT_CONFIDENCE.get(signal.severity_hint, 0.25)


def combined_confidence(signals: list[Signal]) -> float:
    """Noisy-OR over independent evidence: one strongest signal per (source, evidence family), where kinds
    read off the same evidence (``EVIDENCE_FAMILY``) count once."""
    best: dict[tuple[str, str], float] = {}
    for s in signals:
        key = (s.source, EVIDENCE_FAMILY.get(s.kind, s.kind))
        best[key] = max(best.get(key, 0.0), signal_confidence(s))
    miss = 1.0
    for c in best.values():
        miss *= 1.0 - c
    return round(1.0 - miss, 4)


def classify(signal: Signal) -> Severity:
    """Severity of one alert, from where it came from and whether the version serves production."""
    if signal.kind in DRIFT_KINDS:
        return Severity.LOW if signal.severity_hint in {"low", "info"} else Severity.MEDIUM
    if signal.source in {"supply-chain", "scanner"}:
        return Severity.MEDIUM
    if signal.kind in BACKDOOR_KINDS or signal.source == "responder":
        return Severity.CRITICAL if signal.in_production else Severity.HIGH
    return Severity.LOW
