"""The internal registry (the ledger) as model registries and release managers use it."""

from __future__ import annotations

from pathlib import Path

from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import sha256_file
from shared.ledger.model import DEPLOYABLE, InvalidTransition, ModelVersion, Status
from shared.messaging.outbox import audit


def promote(model: str, version: str, who: str, uow: SqlUnitOfWork) -> str | None:
    """Point the production alias at a version with a clean scan; returns the version it replaced.

    A version that was not scanned clean cannot be promoted: the ledger refuses it.
    """
    with uow:
        target = uow.ledger.get(model, version)
        if target is None:
            raise LookupError(f"{model}/{version} is not in the ledger")
        if target.status not in DEPLOYABLE:
            raise InvalidTransition(f"{model}/{version} is {target.status.value}; only scanned-clean versions "
                                    f"may serve production")
        now = uow.now()
        previous = uow.ledger.production_version(model)
        if previous is not None and previous != version:
            old = uow.ledger.get(model, previous)
            if old is not None and old.status is Status.PRODUCTION:
                old.move_to(Status.SCANNED_CLEAN, now, replaced_by=version, replaced_at=now)
                uow.ledger.save(old)
        target.move_to(Status.PRODUCTION, now, promoted_at=now, promoted_by=who)
        uow.ledger.save(target)
        uow.ledger.set_production(model, version, now)
        audit(uow, actor=f"release:{who}", action="registry.promoted", subject=f"{model}/{version}",
              details={"replaced": previous})
        uow.commit()
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
