"""Incident repository and the unit of work that adds it to the shared one."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.incident.adapters.tables import detector_feedback, incidents
from services.incident.domain.incident import CLOSED_VALUES, Incident, IncidentStatus
from services.incident.domain.severity import Severity, Signal
from shared.db.unit_of_work import SqlUnitOfWork


class IncidentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, incident_id: str) -> Incident | None:
        row = self.session.execute(sa.select(incidents).where(incidents.c.incident_id == incident_id)
                                   ).mappings().first()
        return None if row is None else _to_incident(row)

    def open_for(self, model: str, version: str, since: float) -> Incident | None:
        """The open incident of a model version updated within the correlation window."""
        row = self.session.execute(
            sa.select(incidents).where(
                incidents.c.model == model, incidents.c.version == version,
                incidents.c.status.notin_(CLOSED_VALUES),
                incidents.c.updated_at >= since)
            .order_by(incidents.c.updated_at.desc()).limit(1)
        ).mappings().first()
        return None if row is None else _to_incident(row)

    def last_closed_for(self, model: str, version: str) -> Incident | None:
        """The model version's most recently closed incident (false positive or resolved)."""
        row = self.session.execute(
            sa.select(incidents).where(incidents.c.model == model, incidents.c.version == version,
                                       incidents.c.status.in_(CLOSED_VALUES))
            .order_by(incidents.c.updated_at.desc()).limit(1)
        ).mappings().first()
        return None if row is None else _to_incident(row)

    def list_incidents(self, *, open_only: bool = False) -> list[Incident]:
        query = sa.select(incidents).order_by(incidents.c.opened_at.desc())
        if open_only:
            query = query.where(incidents.c.status.notin_(CLOSED_VALUES))
        return [_to_incident(r) for r in self.session.execute(query).mappings()]

    def save(self, incident: Incident) -> None:
        values = _from_incident(incident)
        updated = self.session.execute(
            sa.update(incidents).where(incidents.c.incident_id == incident.incident_id).values(**values))
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            self.session.execute(sa.insert(incidents).values(**values))

    def add_feedback(self, incident: Incident, verdict: str, at: float) -> None:
        self.session.execute(sa.insert(detector_feedback).values(
            incident_id=incident.incident_id, model=incident.model, version=incident.version, verdict=verdict,
            alert_kinds=sorted({s.kind for s in incident.signals}), evidence=incident.evidence, recorded_at=at))

    def feedback(self, model: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(detector_feedback).order_by(detector_feedback.c.id)
        if model is not None:
            query = query.where(detector_feedback.c.model == model)
        return [dict(r) for r in self.session.execute(query).mappings()]


def _to_incident(row: Any) -> Incident:
    data = dict(row["data"])
    return Incident(
        incident_id=row["incident_id"], model=row["model"], version=row["version"], opened_at=row["opened_at"],
        severity=Severity[row["severity"].upper()], status=IncidentStatus(row["status"]), action=row["action"],
        confidence=row["confidence"], updated_at=row["updated_at"],
        signals=[Signal(**s) for s in data.get("signals", [])], evidence=data.get("evidence", []),
        timeline=data.get("timeline", []), affected=data.get("affected", {}))


def _from_incident(i: Incident) -> dict[str, Any]:
    return {"incident_id": i.incident_id, "model": i.model, "version": i.version, "severity": i.severity.label,
            "status": i.status.value, "action": i.action, "confidence": i.confidence, "opened_at": i.opened_at,
            "updated_at": i.updated_at,
            "data": {"signals": [s.__dict__ for s in i.signals], "evidence": i.evidence, "timeline": i.timeline,
                     "affected": i.affected}}


class IncidentUnitOfWork(SqlUnitOfWork):
    incidents: IncidentRepository

    def __enter__(self) -> IncidentUnitOfWork:
        super().__enter__()
        self.incidents = IncidentRepository(self.session)
        return self
