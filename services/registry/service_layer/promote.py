"""The internal registry (the ledger) as model registries and release managers use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import sha256_file
from shared.ledger.model import DEPLOYABLE, InvalidTransition, ModelVersion, Status
from shared.messaging.outbox import audit


@dataclass(frozen=True)
class Promotion:
    replaced: str | None  # the version that served before, if any
    forced_over_incident: str | None = None  # the open backdoor incident a forced promotion overrode


class UnderOpenIncident(InvalidTransition):
    """The version is named by an open backdoor incident; promoting it needs ``force=True`` and a reason."""

    def __init__(self, key: str, incident_id: str) -> None:
        super().__init__(f"{key} is under open backdoor incident {incident_id}: close the incident, or force the "
                         f"promotion with a reason")
        self.key, self.incident_id = key, incident_id


def promote(model: str, version: str, who: str, uow: SqlUnitOfWork, *, force: bool = False,
            reason: str = "") -> Promotion:
    """Point the production alias at a version with a clean scan; returns the version it replaced and the
    incident a forced promotion overrode.

    A version that was not scanned clean cannot be promoted: the ledger refuses it. One that an open backdoor
    incident names (a canary's alerts, set and cleared by the incident service) is refused too, and the refusal
    audited, unless ``force`` with a ``reason``: the promotion's audit record then names the incident overridden.
    """
    if force and not reason.strip():
        raise ValueError("forcing a promotion needs a reason (it goes on the audit trail)")
    with uow:
        target = uow.ledger.get(model, version)
        if target is None:
            _refuse(uow, f"{model}/{version}", who, LookupError(f"{model}/{version} is not in the ledger"))
        if target.status not in DEPLOYABLE:
            _refuse(uow, target.key, who, InvalidTransition(
                f"{model}/{version} is {target.status.value}; only scanned-clean versions may serve production"))
        incident_id = target.open_incident
        if incident_id is not None and not force:
            _refuse_under_incident(uow, target, who, incident_id)
        previous = _move_production(uow, target, who)
        forced = {"forced_over_incident": incident_id, "reason": reason} if incident_id is not None else {}
        audit(uow, actor=f"release:{who}", action="registry.promoted", subject=target.key,
              details={"replaced": previous, **forced})
        uow.commit()
        return Promotion(previous, incident_id)


def _refuse_under_incident(uow: SqlUnitOfWork, target: ModelVersion, who: str, incident_id: str) -> NoReturn:
    _refuse(uow, target.key, who, UnderOpenIncident(target.key, incident_id), incident_id=incident_id)


def _refuse(uow: SqlUnitOfWork, subject: str, who: str, refusal: Exception, **details: str) -> NoReturn:
    """Audit the refusal (every decision is on the trail), then raise it."""
    audit(uow, actor=f"release:{who}", action="registry.promotion-refused", subject=subject,
          details={**details, "reason": str(refusal)})
    uow.commit()
    raise refusal


def _move_production(uow: SqlUnitOfWork, target: ModelVersion, who: str) -> str | None:
    """The ledger side of a promotion: the serving version goes back to scanned-clean, ``target`` serves."""
    now = uow.now()
    previous = uow.ledger.production_version(target.model)
    if previous is not None and previous != target.version:
        old = uow.ledger.get(target.model, previous)
        if old is not None and old.status is Status.PRODUCTION:
            old.move_to(Status.SCANNED_CLEAN, now, replaced_by=target.version, replaced_at=now)
            uow.ledger.save(old)
    target.move_to(Status.PRODUCTION, now, promoted_at=now, promoted_by=who)
    uow.ledger.save(target)
    uow.ledger.set_production(target.model, target.version, now)
    return previous


def import_legacy(model: str, version: str, artifact: Path, who: str, uow: SqlUnitOfWork) -> None:
    """Record a version from a pre-existing registry as deployable without a bdguard scan.

    This is how models that predate the control enter the ledger; it is audited as such, and it is
    exactly the gap that production telemetry and rollback exist to close.
    """
    with uow:
        now = uow.now()
        mv = ModelVersion(model, version, artifact.resolve().as_uri(), sha256_file(artifact),
                          status=Status.SCANNED_CLEAN, created_at=now, updated_at=now,
                          details={"imported_by": who, "scan_note": "legacy import: not scanned by bdguard"})
        uow.ledger.add(mv)
        audit(uow, actor=f"registry:{who}", action="registry.legacy-import", subject=f"{model}/{version}",
              details={"digest": mv.artifact_digest, "warning": "no bdguard scan verdict"})
        uow.commit()
