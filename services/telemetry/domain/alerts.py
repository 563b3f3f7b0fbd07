"""The Alert a window evaluation raises, in the shape of the ``monitoring.alert.v1`` record."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

AlertKind = Literal[
    "targeted_misclassification",
    "rare_input_pattern",
    "trigger_pattern_match",
    "strip_trojaned_inputs",
    "class_distribution_drift",
    "confidence_drop",
]
Severity = Literal["critical", "high", "medium", "low"]

BACKDOOR_KINDS: frozenset[str] = frozenset(
    {"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match", "strip_trojaned_inputs"}
)
DRIFT_KINDS: frozenset[str] = frozenset({"class_distribution_drift", "confidence_drop"})
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}

# Fixed namespace: the same window and finding always get the same alert_id, so a replayed window
# (at-least-once delivery) yields a duplicate that downstream handlers drop by id.
_ALERT_NAMESPACE = uuid.UUID("6f1c2d4e-8a5b-4c3d-9e7f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class Alert:
    """One finding about one model version over one window.

    ``evidence`` holds named numbers a responder can read without the code (shares, p-values,
    baseline values, example prediction ids). Backdoor kinds are never rated below ``high``; drift
    kinds never above ``medium``.
    """

    alert_id: str
    model: str
    version: str
    kind: AlertKind
    severity_hint: Severity
    evidence: dict[str, Any]
    window_start: float
    window_end: float
    first_prediction_id: str | None
    last_prediction_id: str | None
    target_class: int | None = None
    detected_at: float = field(default_factory=time.time)

    @property
    def is_backdoor(self) -> bool:
        """True for backdoor-kind findings (targeted, rare pattern, trigger match)."""
        return self.kind in BACKDOOR_KINDS

    def to_dict(self, source: str = "bdguard.telemetry") -> dict[str, Any]:
        """JSON-able dict with the field names of the ``Alert`` wire record."""
        return {
            "alert_id": self.alert_id, "model": self.model, "version": self.version,
            "kind": self.kind, "severity_hint": self.severity_hint, "source": source,
            "detected_at": self.detected_at, "evidence": self.evidence,
            "target_class": self.target_class, "window_start": self.window_start,
            "window_end": self.window_end, "first_prediction_id": self.first_prediction_id,
            "last_prediction_id": self.last_prediction_id,
        }


def plain(value: Any) -> Any:
    """Evidence with numpy scalars and arrays turned into Python numbers and lists (any JSON encoder)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return value.tolist()
    return value


def alert_id_for(model: str, version: str, kind: str, window_start: float, discriminator: str = "") -> str:
    """Deterministic alert id (uuid5 hex) for a finding in a window."""
    name = f"{model}/{version}/{kind}/{window_start:.3f}/{discriminator}"
    return uuid.uuid5(_ALERT_NAMESPACE, name).hex
