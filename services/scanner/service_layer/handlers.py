"""Scanner service handlers: scan requests in, scanned-clean or quarantined out (with evidence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.contracts.records import Alert, ScanCompleted, ScanRequested
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import Status
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit, stage

SOURCE = "urn:bdguard:scanner"
CONSUMER = "scanner"


class NotValidated(ValueError):
    """A scan request for a version supply-chain validation never approved (refused, dead-lettered)."""


@dataclass(frozen=True)
class ScanOutcome:
    """What the scan found, as plain data (the detectors' own verdict object stays in the scanner)."""

    backdoor_detected: bool
    confidence: float
    target_classes: list[int]
    detectors: list[dict[str, Any]]
    duration_s: float
    report_uri: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # caveats on the verdict (e.g. a small clean set)


def admit(request: ScanRequested, event_id: str, uow: SqlUnitOfWork) -> bool:
    """Whether to scan: not a redelivery, and supply chain validated exactly this artifact."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return False
        mv = uow.ledger.get(request.model, request.version)
        if mv is None or mv.status is not Status.VALIDATED:
            state = "unknown" if mv is None else mv.status.value
            raise NotValidated(f"{request.model}/{request.version} is {state}, not validated by supply chain")
        if mv.artifact_digest != request.artifact_digest:
            raise NotValidated(f"{request.model}/{request.version}: requested digest differs from the validated one")
    return True


def record_scan(request: ScanRequested, outcome: ScanOutcome, event_id: str, uow: SqlUnitOfWork) -> Status:
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return Status.VALIDATED
        now = uow.now()
        mv = uow.ledger.get(request.model, request.version)
        assert mv is not None
        bad = outcome.backdoor_detected or outcome.error is not None
        status = Status.QUARANTINED if bad else Status.SCANNED_CLEAN
        mv.move_to(status, now, scan={"confidence": outcome.confidence, "target_classes": outcome.target_classes,
                                      "report_uri": outcome.report_uri, "error": outcome.error})
        uow.ledger.save(mv)
        verdict = "error" if outcome.error else status.value
        stage(uow, build_message(ScanCompleted(
            model=request.model, version=request.version, verdict=verdict, backdoor_detected=outcome.backdoor_detected,
            confidence=round(outcome.confidence, 4), target_classes=outcome.target_classes,
            detectors=outcome.detectors, duration_s=round(outcome.duration_s, 3), report_uri=outcome.report_uri),
            source=SOURCE, correlation_id=event_id))
        if bad:
            stage(uow, build_message(_alert(request, outcome, now, event_id), source=SOURCE, correlation_id=event_id))
        audit(uow, actor="scanner", action=f"scan.{verdict}", subject=f"{request.model}/{request.version}",
              details={"confidence": round(outcome.confidence, 4), "target_classes": outcome.target_classes,
                       "flagged": [d["key"] for d in outcome.detectors if d.get("verdict") == "suspicious"],
                       "error": outcome.error, "report_uri": outcome.report_uri, "notes": outcome.notes},
              correlation_id=event_id)
        uow.processed.mark(CONSUMER, event_id, now)
        uow.commit()
        return status


def _alert(request: ScanRequested, outcome: ScanOutcome, now: float, event_id: str) -> Alert:
    kind = "scan_failed" if outcome.error else "backdoor_detected"
    hint = "high" if outcome.error is None and outcome.confidence >= 0.9 else "medium"
    return Alert(alert_id=f"scan-{event_id[:40]}", model=request.model, version=request.version, kind=kind,
                 severity_hint=hint, source="scanner", detected_at=now,
                 target_class=outcome.target_classes[0] if outcome.target_classes else None,
                 evidence={"confidence": round(outcome.confidence, 4), "target_classes": outcome.target_classes,
                           "report_uri": outcome.report_uri, "error": outcome.error,
                           "detectors": {d["key"]: d.get("score") for d in outcome.detectors}})
