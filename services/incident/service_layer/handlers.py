"""Incident handlers: correlate alerts, escalate, take responder actions, record rollbacks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.config import IncidentSettings
from services.incident.domain.incident import Escalation, Incident
from services.incident.domain.severity import BACKDOOR_KINDS, Signal
from shared.contracts.records import Alert, IncidentEscalated, RemediationCompleted, RollbackCompleted
from shared.ledger.model import DEPLOYABLE, OPEN_INCIDENT, Status
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit, stage

SOURCE = "urn:bdguard:incident"
CONSUMER = "incident"
# alert ids seen, whatever event carried them: a producer retry or a re-publication gets a new event id
ALERT_IDS = "incident.alert-id"


@dataclass(frozen=True)
class AlertOutcome:
    incident_id: str | None
    escalations: tuple[Escalation, ...]
    duplicate: bool = False


def _escalation_record(e: Escalation, incident: Incident) -> IncidentEscalated:
    first = min((s.detected_at for s in incident.signals), default=None)
    first_pid = next((ev.get("first_prediction_id") for ev in incident.evidence if ev.get("first_prediction_id")),
                     None)
    return IncidentEscalated(incident_id=e.incident_id, model=e.model, version=e.version, severity=e.severity.label,
                             action=e.action, confidence=e.confidence, summary=e.summary, respond_by=e.respond_by,
                             responders=list(e.responders), alert_ids=list(e.alert_ids), first_signal_at=first,
                             first_prediction_id=first_pid)


def _publish_escalations(uow: IncidentUnitOfWork, incident: Incident, correlation_id: str | None) -> None:
    for event in incident.events:
        stage(uow, build_message(_escalation_record(event, incident), source=SOURCE, correlation_id=correlation_id))
        audit(uow, actor="incident", action=f"incident.escalated.{event.severity.label}",
              subject=f"{incident.model}/{incident.version}",
              details={"incident_id": incident.incident_id, "action": event.action,
                       "confidence": event.confidence, "responders": list(event.responders)},
              correlation_id=correlation_id)


def handle_alert(alert: Alert, event_id: str, uow: IncidentUnitOfWork, settings: IncidentSettings,
                 new_id: Callable[[], str] = lambda: "inc-" + uuid.uuid4().hex[:12]) -> AlertOutcome:
    """Join the alert to its model version's open incident (or open one); idempotent on the event id."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id) or uow.processed.seen(ALERT_IDS, alert.alert_id):
            return AlertOutcome(None, (), duplicate=True)
        now = uow.now()
        production = uow.ledger.production_version(alert.model)
        signal = Signal(alert.alert_id, alert.kind, alert.source, alert.severity_hint, alert.detected_at,
                        in_production=production == alert.version)
        evidence = _evidence(alert)
        incident = uow.incidents.open_for(alert.model, alert.version, since=now - settings.correlation_window_s)
        closed = None if incident is not None else uow.incidents.last_closed_for(alert.model, alert.version)
        traffic_until = alert.detected_at if alert.window_end is None else alert.window_end
        if closed is not None and closed.judged(traffic_until):
            incident = closed
            _record_late_alert(uow, closed, signal, evidence, now, event_id)
        else:
            incident = incident or Incident(new_id(), alert.model, alert.version, opened_at=now, updated_at=now)
            incident.add_signal(signal, evidence, settings.rollback_confidence, at=now)
            incident.note(now, "alerted", alert_id=alert.alert_id)
            _mark_open_incident(uow, incident)
        uow.incidents.save(incident)
        _publish_escalations(uow, incident, event_id)
        uow.processed.mark(CONSUMER, event_id, now)
        uow.processed.mark(ALERT_IDS, alert.alert_id, now)
        uow.commit()
        return AlertOutcome(incident.incident_id, tuple(incident.events))


def _evidence(alert: Alert) -> dict[str, Any]:
    return {"severity_hint": alert.severity_hint, "target_class": alert.target_class,
            "window_start": alert.window_start, "window_end": alert.window_end,
            "first_prediction_id": alert.first_prediction_id, "last_prediction_id": alert.last_prediction_id,
            "detail": alert.evidence}


def _record_late_alert(uow: IncidentUnitOfWork, closed: Incident, signal: Signal, evidence: dict[str, Any],
                       now: float, event_id: str) -> None:
    """An alert about traffic a responder's closing decision covered (a campaign view's late window): kept on
    that incident and audited, but it pages nobody and rolls nothing back. Later traffic opens a new incident."""
    closed.add_late_alert(signal, evidence, now)
    audit(uow, actor="incident", action="incident.late-alert", subject=f"{closed.model}/{closed.version}",
          details={"incident_id": closed.incident_id, "alert_id": signal.alert_id, "kind": signal.kind,
                   "judged": closed.status.value, "closed_at": closed.closed_at}, correlation_id=event_id)


def handle_rollback_completed(done: RollbackCompleted, event_id: str, uow: IncidentUnitOfWork) -> bool:
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return False
        incident = uow.incidents.get(done.incident_id)
        if incident is None:  # production was pulled for an incident this store never held: keep it in view
            incident = Incident.opened_by_rollback(done.incident_id, done.model, done.from_version, uow.now())
            audit(uow, actor="incident", action="incident.rollback-without-incident",
                  subject=f"{done.model}/{done.from_version}",
                  details={"incident_id": done.incident_id, "status": done.status, "to_version": done.to_version},
                  correlation_id=done.incident_id)
        incident.record_rollback(done.completed_at, done.status, done.to_version, dict(done.affected or {}),
                                 done.duration_ms)
        uow.incidents.save(incident)
        uow.processed.mark(CONSUMER, event_id, uow.now())
        uow.commit()
        return True


def handle_remediation_completed(done: RemediationCompleted, event_id: str, uow: IncidentUnitOfWork) -> bool:
    """A remediation requested for an incident lands on its timeline (candidate, figures or the reason)."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return False
        incident = uow.incidents.get(done.incident_id) if done.incident_id else None
        if incident is not None:
            incident.note(done.completed_at, f"remediation {done.status}", version=done.version,
                          candidate_version=done.candidate_version, meets_bar=done.meets_bar, reason=done.reason,
                          figures=dict(done.figures or {}))
            uow.incidents.save(incident)
        uow.processed.mark(CONSUMER, event_id, uow.now())
        uow.commit()
        return incident is not None


def respond(incident_id: str, action: str, who: str, uow: IncidentUnitOfWork, note: str = "") -> Incident:
    """A responder acts on an incident; every action is audited, a false positive becomes feedback."""
    with uow:
        incident = uow.incidents.get(incident_id)
        if incident is None:
            raise LookupError(f"no incident {incident_id}")
        now = uow.now()
        if action == "acknowledge":
            incident.acknowledge(now, who)
        elif action == "confirm":
            _confirm(uow, incident, who, now)
        elif action == "false-positive":
            incident.mark_false_positive(now, who, note)
            uow.incidents.add_feedback(incident, "false_positive", now)
            _clear_open_incident(uow, incident)
        elif action == "resolve":
            incident.resolve(now, who, note)
            _clear_open_incident(uow, incident)
        else:
            raise ValueError(f"unknown responder action {action!r}")
        uow.incidents.save(incident)
        audit(uow, actor=f"responder:{who}", action=f"incident.{action}",
              subject=f"{incident.model}/{incident.version}", details={"incident_id": incident_id, "note": note})
        _publish_escalations(uow, incident, None)
        uow.commit()
        return incident


def _mark_open_incident(uow: IncidentUnitOfWork, incident: Incident) -> None:
    """Name an incident with backdoor evidence on its version's ledger entry, so that no rollback goes to that
    version (a canary's alerts) while a clean one without an open incident exists."""
    if not any(s.kind in BACKDOOR_KINDS for s in incident.signals):
        return
    mv = uow.ledger.get(incident.model, incident.version)
    if mv is not None and mv.open_incident is None:
        mv.details[OPEN_INCIDENT] = incident.incident_id
        uow.ledger.save(mv)


def _clear_open_incident(uow: IncidentUnitOfWork, incident: Incident) -> None:
    """A responder closed the incident (false positive, resolved): its version may be a rollback target again."""
    mv = uow.ledger.get(incident.model, incident.version)
    if mv is not None and mv.open_incident == incident.incident_id:
        del mv.details[OPEN_INCIDENT]
        uow.ledger.save(mv)


def _confirm(uow: IncidentUnitOfWork, incident: Incident, who: str, now: float) -> None:
    """A confirmed backdoor in production calls for a rollback; one in a version that no longer serves (a release
    moved past it) is quarantined here, so that no later rollback or promotion can return to it."""
    mv = uow.ledger.get(incident.model, incident.version)
    incident.confirm(now, who, in_production=mv is not None and mv.status is Status.PRODUCTION)
    if mv is None or mv.status not in DEPLOYABLE or mv.status is Status.PRODUCTION:
        return
    was = mv.status.value
    mv.move_to(Status.QUARANTINED, now, quarantined_by=f"responder:{who}", incident_id=incident.incident_id)
    uow.ledger.save(mv)
    audit(uow, actor=f"responder:{who}", action="incident.quarantined", subject=mv.key,
          details={"incident_id": incident.incident_id, "was": was})
