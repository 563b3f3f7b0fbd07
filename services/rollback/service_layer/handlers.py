"""Rollback: from an escalation that calls for it to production back on a clean version."""

from __future__ import annotations

from dataclasses import dataclass

from services.rollback.domain.plan import RollbackPlan, affected_predictions, bad_version_status, plan_rollback
from shared.contracts.records import IncidentEscalated, RollbackCompleted
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import ModelVersion, Status
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit, stage

SOURCE = "urn:bdguard:rollback"
CONSUMER = "rollback"
NO_SAFE_RESPONDERS = ["ml-security-oncall", "incident-commander", "model-owner", "ciso"]


class UnknownModelVersion(LookupError):
    """The escalation names a model version the ledger has never seen."""


@dataclass(frozen=True)
class RollbackOutcome:
    completed: RollbackCompleted
    plan: RollbackPlan
    target: ModelVersion | None


@dataclass(frozen=True)
class ServingOrder:
    """What the inference servers must be told: switch to ``target``, or divert the model's traffic."""

    model: str
    target: ModelVersion | None = None
    divert_reason: str | None = None


def handle_escalation(esc: IncidentEscalated, received_at: float, uow: SqlUnitOfWork) -> RollbackOutcome | None:
    """Roll back once per incident (duplicate or replayed escalations are no-ops)."""
    if esc.action != "rollback":
        return None
    with uow:
        if uow.processed.seen(CONSUMER, esc.incident_id):
            return None
        bad = uow.ledger.get(esc.model, esc.version)
        if bad is None:
            raise UnknownModelVersion(f"{esc.model}/{esc.version} is not in the ledger")
        plan = plan_rollback(bad, uow.ledger.list(esc.model), uow.ledger.production_version(esc.model))
        now = uow.now()
        served_since = bad.details.get("promoted_at")
        # a version a release already replaced stopped serving then, not now
        served_until = now if plan.bad_was_production else float(bad.details.get("replaced_at", now))
        target = _apply(plan, bad, uow, now)
        done = RollbackCompleted(
            incident_id=esc.incident_id, model=esc.model, from_version=esc.version,
            status="completed" if plan.has_safe_version else "no_safe_version",
            traffic_diverted=not plan.has_safe_version, escalation_received_at=received_at, completed_at=now,
            duration_ms=round((now - received_at) * 1000.0, 3), to_version=plan.target_version,
            affected=affected_predictions(served_since=served_since, first_signal_at=esc.first_signal_at,
                                          rolled_back_at=served_until, first_prediction_id=esc.first_prediction_id))
        stage(uow, build_message(done, source=SOURCE, correlation_id=esc.incident_id))
        if not plan.has_safe_version:
            stage(uow, build_message(_no_safe_version(esc, now), source=SOURCE, correlation_id=esc.incident_id))
        audit(uow, actor="rollback", action=f"rollback.{done.status}", subject=f"{esc.model}/{esc.version}",
              details={"incident_id": esc.incident_id, "to_version": plan.target_version, "reason": plan.reason,
                       "duration_ms": done.duration_ms}, correlation_id=esc.incident_id)
        uow.processed.mark(CONSUMER, esc.incident_id, now)
        uow.commit()
    return RollbackOutcome(done, plan, target)


def serving_order(outcome: RollbackOutcome) -> ServingOrder | None:
    if outcome.target is not None:
        return ServingOrder(outcome.plan.model, target=outcome.target)
    if not outcome.plan.has_safe_version:
        return ServingOrder(outcome.plan.model, divert_reason=outcome.plan.reason)
    return None


def replayed_serving_order(esc: IncidentEscalated, uow: SqlUnitOfWork) -> ServingOrder | None:
    """A redelivered escalation whose rollback is already committed: the worker may have died between the commit
    and telling the servers, so tell them again what the ledger says now (switching and diverting are idempotent)."""
    if esc.action != "rollback":
        return None
    with uow:
        if not uow.processed.seen(CONSUMER, esc.incident_id):
            return None
        bad = uow.ledger.get(esc.model, esc.version)
        production = uow.ledger.production_version(esc.model)
        if bad is None or bad.status is not Status.ROLLED_BACK:  # it never served, or was pulled otherwise
            return None
        if production == esc.version:
            diverted = bad.details.get("traffic_diverted") is True
            return ServingOrder(esc.model, divert_reason=f"{bad.key} pulled, no safe version") if diverted else None
        target = None if production is None else uow.ledger.get(esc.model, production)
        return None if target is None else ServingOrder(esc.model, target=target)


def _apply(plan: RollbackPlan, bad: ModelVersion, uow: SqlUnitOfWork, now: float) -> ModelVersion | None:
    new_status = bad_version_status(plan)
    if bad.can_move_to(new_status):
        bad.move_to(new_status, now, pulled_by="rollback", pulled_at=now)
    else:
        bad.details.update(pulled_by="rollback", pulled_at=now, blocked=True)
    if not plan.has_safe_version:
        bad.details["traffic_diverted"] = True
    uow.ledger.save(bad)
    if plan.target_version is None or not plan.bad_was_production:
        return None
    target = uow.ledger.get(plan.model, plan.target_version)
    assert target is not None
    target.move_to(Status.PRODUCTION, now, promoted_at=now, promoted_by="rollback")
    uow.ledger.save(target)
    uow.ledger.set_production(plan.model, plan.target_version, now)
    return target


def _no_safe_version(esc: IncidentEscalated, now: float) -> IncidentEscalated:
    return IncidentEscalated(
        incident_id=esc.incident_id, model=esc.model, version=esc.version, severity="critical",
        action="investigate", confidence=esc.confidence,
        summary=f"NO SAFE VERSION of {esc.model}: {esc.version} pulled and traffic diverted; "
                f"no other version has a clean scan verdict — restore service by hand",
        respond_by=now + 15 * 60, responders=NO_SAFE_RESPONDERS, alert_ids=list(esc.alert_ids),
        first_signal_at=esc.first_signal_at, first_prediction_id=esc.first_prediction_id)
