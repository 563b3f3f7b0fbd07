"""A small world for incident and rollback sequences: a migrated SQLite store, a hand-moved clock, and the
service-layer handlers wired as the services wire them (escalations staged by incident, read by rollback)."""

from __future__ import annotations

from typing import Any

import orjson

from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.config import IncidentSettings
from services.incident.domain.incident import Incident
from services.incident.service_layer.handlers import AlertOutcome, handle_alert, handle_rollback_completed
from services.rollback.service_layer.handlers import RollbackOutcome, handle_escalation
from shared import topics
from shared.audit.chain import AuditEntry, verify_chain
from shared.contracts.records import Alert, IncidentEscalated, RollbackCompleted
from shared.db.engine import make_engine, make_session_factory
from shared.ledger.model import ModelVersion, Status

DIGEST = "sha256:" + "ab" * 32


class World:
    def __init__(self, url: str, settings: IncidentSettings | None = None) -> None:
        self.sessions = make_session_factory(make_engine(url))
        self.settings = settings or IncidentSettings()
        self.clock = 1_000.0

    def uow(self) -> IncidentUnitOfWork:
        return IncidentUnitOfWork(self.sessions, clock=lambda: self.clock)

    # the ledger ----------------------------------------------------------------------------------------
    def seed(self, model: str, statuses: dict[str, Status], production: str | None = None) -> None:
        with self.uow() as uow:
            for i, (version, status) in enumerate(statuses.items()):
                details: dict[str, Any] = {"scan": {"confidence": 0.1}}
                if version == production:
                    details["promoted_at"] = 50.0
                uow.ledger.add(ModelVersion(model, version, f"file:///{model}-{version}.onnx", DIGEST, status=status,
                                            created_at=float(i), updated_at=float(i), details=details))
            if production:
                uow.ledger.set_production(model, production, 50.0)
            uow.commit()

    def version(self, model: str, version: str) -> ModelVersion:
        with self.uow() as uow:
            mv = uow.ledger.get(model, version)
        assert mv is not None
        return mv

    def production(self, model: str) -> str | None:
        with self.uow() as uow:
            return uow.ledger.production_version(model)

    # alerts, escalations, rollbacks --------------------------------------------------------------------
    def alert(self, model: str, version: str, alert_id: str, *, kind: str = "targeted_misclassification",
              hint: str = "critical", source: str = "telemetry", event_id: str | None = None,
              detected_at: float | None = None, window_end: float | None = None) -> AlertOutcome:
        at = self.clock if detected_at is None else detected_at
        end = at if window_end is None else window_end
        record = Alert(alert_id=alert_id, model=model, version=version, kind=kind, severity_hint=hint,
                       source=source, detected_at=at, evidence={"share": 0.4}, target_class=7,
                       window_start=end - 10.0, window_end=end, first_prediction_id=f"p-{alert_id}",
                       last_prediction_id=None)
        return handle_alert(record, event_id or f"evt-{alert_id}", self.uow(), self.settings)

    def incident(self, incident_id: str | None) -> Incident:
        with self.uow() as uow:
            incident = uow.incidents.get(incident_id or "")
        assert incident is not None
        return incident

    def incidents(self) -> list[Incident]:
        with self.uow() as uow:
            return uow.incidents.list_incidents()

    def staged(self, topic: str) -> list[dict[str, Any]]:
        with self.uow() as uow:
            return [orjson.loads(r["value"]) for r in uow.outbox.pending() if r["topic"] == topic]

    def escalations(self, action: str | None = None) -> list[IncidentEscalated]:
        return [IncidentEscalated(**e) for e in self.staged(topics.INCIDENT_ESCALATED)
                if action is None or e["action"] == action]

    def roll_back(self, esc: IncidentEscalated) -> RollbackOutcome | None:
        """The rollback service handles the escalation, then the incident service records what it did."""
        outcome = handle_escalation(esc, received_at=self.clock, uow=self.uow())
        if outcome is not None:
            handle_rollback_completed(outcome.completed, f"rb-{esc.incident_id}", self.uow())
        return outcome

    def rollbacks(self) -> list[RollbackCompleted]:
        return [RollbackCompleted(**r) for r in self.staged(topics.ROLLBACK_COMPLETED)]

    # the audit trail ------------------------------------------------------------------------------------
    def audit(self) -> list[AuditEntry]:
        with self.uow() as uow:
            return list(uow.audit.iterate())

    def audit_actions(self) -> list[str]:
        entries = self.audit()
        assert verify_chain(entries).ok  # every sequence leaves an intact hash chain
        return [e.action for e in entries]
