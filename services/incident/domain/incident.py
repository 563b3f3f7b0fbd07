"""The incident aggregate: alerts about one model version, correlated into one story (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.incident.domain.severity import (
    BACKDOOR_KINDS,
    RESPOND_WITHIN_S,
    RESPONDERS,
    Severity,
    Signal,
    classify,
    combined_confidence,
)


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"
    RESOLVED = "resolved"


CLOSED = frozenset({IncidentStatus.FALSE_POSITIVE, IncidentStatus.RESOLVED})
CLOSED_VALUES = sorted(s.value for s in CLOSED)  # as stored, and as the closing timeline entries name them


class IncidentError(ValueError):
    """A responder action that does not fit the incident's state."""


@dataclass(frozen=True)
class Escalation:
    """Domain event: the incident needs (more) attention; published on incident.escalated.v1."""

    incident_id: str
    model: str
    version: str
    severity: Severity
    action: str
    confidence: float
    summary: str
    respond_by: float
    responders: tuple[str, ...]
    alert_ids: tuple[str, ...]


@dataclass
class Incident:
    incident_id: str
    model: str
    version: str
    opened_at: float
    severity: Severity = Severity.LOW
    status: IncidentStatus = IncidentStatus.OPEN
    action: str = "none"
    confidence: float = 0.0
    updated_at: float = 0.0
    signals: list[Signal] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    affected: dict[str, Any] = field(default_factory=dict)
    events: list[Escalation] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED

    @classmethod
    def opened_by_rollback(cls, incident_id: str, model: str, version: str, at: float) -> Incident:
        """A rollback answered an incident this service holds no record of: production was pulled, so it is
        kept in view as an open critical incident rather than dropped."""
        return cls(incident_id, model, version, opened_at=at, updated_at=at, severity=Severity.CRITICAL,
                   action="rollback")

    @property
    def closed_at(self) -> float | None:
        """When a responder closed the incident (None while open)."""
        if self.is_open:
            return None
        return next((t["at"] for t in reversed(self.timeline) if t["what"] in CLOSED_VALUES), self.updated_at)

    def judged(self, traffic_until: float) -> bool:
        """Whether a responder's closing decision already covered traffic up to ``traffic_until``."""
        closed_at = self.closed_at
        return closed_at is not None and traffic_until <= closed_at

    def note(self, at: float, what: str, **details: Any) -> None:
        self.timeline.append({"at": at, "what": what, **details})
        self.updated_at = at

    def add_signal(self, signal: Signal, evidence: dict[str, Any], rollback_confidence: float,
                   at: float | None = None) -> bool:
        """Correlate one alert; returns False for an alert already seen (dedup).

        Records an :class:`Escalation` when the severity or the action goes up, so repeated alerts
        of the same story do not page anybody twice. ``at`` is when the alert is handled (the escalation's
        time on the timeline; the alert's own ``detected_at`` is the producer's clock and may be skewed).
        """
        if any(s.alert_id == signal.alert_id for s in self.signals):
            return False
        if not self.signals:
            self.note(signal.detected_at, "detected", alert_id=signal.alert_id, kind=signal.kind)
        self.signals.append(signal)
        self.evidence.append({"alert_id": signal.alert_id, "kind": signal.kind, "source": signal.source,
                              **evidence})
        before = (self.severity, self.action)
        self.severity = max(self.severity, classify(signal))
        self.confidence = combined_confidence(self.signals)
        self.action = max(self.action, self._action(rollback_confidence), key=ACTION_RANK.__getitem__)
        if (self.severity, self.action) != before or len(self.signals) == 1:
            self._escalate(signal.detected_at if at is None else at)
        return True

    def add_late_alert(self, signal: Signal, evidence: dict[str, Any], at: float) -> None:
        """Keep an alert about traffic a closing decision already covered as evidence: no page, no action."""
        self.evidence.append({"alert_id": signal.alert_id, "kind": signal.kind, "source": signal.source,
                              "late": True, **evidence})
        self.note(at, "late_alert", alert_id=signal.alert_id, kind=signal.kind, judged=self.status.value)

    def _action(self, rollback_confidence: float) -> str:
        backdoor_in_prod = any(s.in_production and s.kind in BACKDOOR_KINDS for s in self.signals)
        # a supply-chain alert is about refused bytes (a re-publication under a recorded version id included),
        # never the bytes serving: it raises the severity but does not corroborate a rollback
        serving = combined_confidence([s for s in self.signals if s.source != "supply-chain"])
        if self.severity is Severity.CRITICAL and backdoor_in_prod and (
                serving >= rollback_confidence or self.status is IncidentStatus.CONFIRMED):
            return "rollback"
        if self.severity is Severity.MEDIUM and any(s.source == "scanner" for s in self.signals):
            return "quarantine"
        return "investigate"

    def _escalate(self, at: float) -> None:
        kinds = sorted({s.kind for s in self.signals})
        summary = (f"{self.severity.label} incident on {self.model}/{self.version}: {', '.join(kinds)} "
                   f"({len(self.signals)} alert(s), confidence {self.confidence:.2f}); action {self.action}")
        self.events.append(Escalation(
            incident_id=self.incident_id, model=self.model, version=self.version, severity=self.severity,
            action=self.action, confidence=self.confidence, summary=summary,
            respond_by=self.opened_at + RESPOND_WITHIN_S[self.severity], responders=RESPONDERS[self.severity],
            alert_ids=tuple(s.alert_id for s in self.signals)))
        self.note(at, "escalated", severity=self.severity.label, action=self.action)

    # responder actions -------------------------------------------------------------------------
    def acknowledge(self, at: float, who: str) -> None:
        self._require_open()
        self.status = IncidentStatus.ACKNOWLEDGED
        self.note(at, "acknowledged", by=who)

    def confirm(self, at: float, who: str, in_production: bool) -> None:
        """A human confirms the backdoor; in production that calls for a rollback at once."""
        self._require_open()
        self.status = IncidentStatus.CONFIRMED
        self.note(at, "confirmed", by=who)
        self.signals.append(Signal(f"confirm-{self.incident_id}", "responder_confirmed", "responder", "critical",
                                   at, in_production))
        self.severity = max(self.severity, Severity.CRITICAL if in_production else Severity.HIGH)
        self.confidence = 1.0
        # never below what was already called for (a confirmation after the rollback keeps "rollback")
        self.action = max(self.action, "rollback" if in_production else "quarantine", key=ACTION_RANK.__getitem__)
        self._escalate(at)

    def mark_false_positive(self, at: float, who: str, reason: str) -> None:
        self._require_open()
        self.status = IncidentStatus.FALSE_POSITIVE
        self.severity = Severity.LOW
        self.note(at, "false_positive", by=who, reason=reason)

    def resolve(self, at: float, who: str, note: str = "") -> None:
        self._require_open()
        self.status = IncidentStatus.RESOLVED
        self.note(at, "resolved", by=who, note=note)

    def record_rollback(self, at: float, status: str, to_version: str | None, affected: dict[str, Any],
                        duration_ms: float) -> None:
        self.affected = affected
        what = "rolled_back" if status == "completed" else "no_safe_version"
        self.note(at, what, to_version=to_version, duration_ms=duration_ms)

    def _require_open(self) -> None:
        if not self.is_open:
            raise IncidentError(f"incident {self.incident_id} is {self.status.value}")


ACTION_RANK = {"none": 0, "investigate": 1, "quarantine": 2, "rollback": 3}
