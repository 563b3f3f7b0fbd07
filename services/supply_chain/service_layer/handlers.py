"""Supply-chain service handlers: a published model version in, a verdict (and the next step) out."""

from __future__ import annotations

from dataclasses import dataclass

from services.supply_chain.domain.model import ModelVersionPublished as PublishedEvent
from services.supply_chain.domain.model import SupplyChainVerdict as Verdict
from shared.contracts.records import Alert, ModelVersionPublished, ScanRequested, SupplyChainVerdict
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import ModelVersion, Status
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit, stage

SOURCE = "urn:bdguard:supply-chain"
CONSUMER = "supply-chain"
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class Recorded:
    verdict: Verdict | None
    reason: str


def to_domain(record: ModelVersionPublished) -> PublishedEvent:
    return PublishedEvent.from_dict(record.asdict())


def already_handled(record: ModelVersionPublished, event_id: str, uow: SqlUnitOfWork) -> str | None:
    """Why this event needs no validation: a redelivery, or a version the ledger already holds."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return "duplicate event"
        existing = uow.ledger.get(record.model, record.version)
        if existing is not None and existing.artifact_digest == record.artifact_digest:
            return f"version already recorded ({existing.status.value})"
    return None


def record_verdict(record: ModelVersionPublished, verdict: Verdict, event_id: str,
                   uow: SqlUnitOfWork) -> Recorded:
    """Ledger, audit, verdict event, and either a scan request or an alert — in one transaction."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return Recorded(None, "duplicate event")
        now = uow.now()
        subject = f"{record.model}/{record.version}"
        existing = uow.ledger.get(record.model, record.version)
        if existing is not None:  # same name, different bytes: never overwrite a recorded version
            verdict = _conflict(verdict, existing)
        else:
            mv = ModelVersion(record.model, record.version, record.artifact_uri, verdict.artifact_digest,
                              source_url=record.source_url, created_at=now, updated_at=now,
                              details={"submitter": record.submitter, "declared_digest": record.artifact_digest,
                                       "provenance": record.provenance or {}})
            mv.move_to(Status.VALIDATED if verdict.approved else Status.REJECTED, now,
                       supply_chain={"approved": verdict.approved, "failed": _failed(verdict)})
            uow.ledger.add(mv)
        wire = SupplyChainVerdict(**verdict.to_dict())
        stage(uow, build_message(wire, source=SOURCE, correlation_id=event_id))
        if verdict.approved:
            stage(uow, build_message(ScanRequested(
                model=record.model, version=record.version, artifact_uri=record.artifact_uri,
                artifact_digest=verdict.artifact_digest, requested_by="supply-chain",
                clean_data_uri=record.clean_data_uri), source=SOURCE, correlation_id=event_id))
        else:
            stage(uow, build_message(_alert(verdict, now, event_id), source=SOURCE, correlation_id=event_id))
        audit(uow, actor="supply-chain", action="supply-chain." + ("approved" if verdict.approved else "rejected"),
              subject=subject, details={"failed": _failed(verdict), "rationale": verdict.rationale[:500],
                                        "digest": verdict.artifact_digest, "source_url": record.source_url},
              correlation_id=event_id)
        uow.processed.mark(CONSUMER, event_id, now)
        uow.commit()
    return Recorded(verdict, "recorded")


def _failed(verdict: Verdict) -> list[str]:
    return [c.name for c in verdict.checks if not c.passed]


def _alert(verdict: Verdict, now: float, event_id: str) -> Alert:
    failed = [c for c in verdict.checks if not c.passed]
    worst = min((SEVERITY_ORDER.index(c.severity) for c in failed), default=2)
    return Alert(alert_id=f"sc-{event_id[:40]}", model=verdict.model, version=verdict.version,
                 kind="supply_chain_rejected", severity_hint=SEVERITY_ORDER[worst], source="supply-chain",
                 detected_at=now, evidence={"failed_checks": {c.name: c.details[:300] for c in failed},
                                            "rationale": verdict.rationale[:500]})


def _conflict(verdict: Verdict, existing: ModelVersion) -> Verdict:
    from services.supply_chain.domain.model import CheckResult

    clash = CheckResult("ledger", False, "critical",
                        f"{existing.key} is already recorded with digest {existing.artifact_digest}; "
                        f"a different artifact under the same version is refused (possible tampering)")
    return Verdict(model=verdict.model, version=verdict.version, approved=False, checks=(*verdict.checks, clash),
                   rationale=clash.details, artifact_digest=verdict.artifact_digest,
                   artifact_uri=verdict.artifact_uri, clean_data_uri=verdict.clean_data_uri)
