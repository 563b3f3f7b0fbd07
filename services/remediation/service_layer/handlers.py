"""Remediation service handlers: a request in; a candidate on the registry topic and the outcome out.

Every request gets exactly one ``remediation.completed.v1``: ``proposed`` with the candidate and its
figures, ``refused`` when the request cannot be acted on (unknown version, a status that is not
remediated, no clean data, changed parent bytes), ``failed`` when remediation itself broke.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.remediation.service_layer.candidate import (
    Candidate,
    audit_proposal,
    check_parent_bytes,
    choose_parent,
)
from shared.contracts.records import RemediationCompleted, RemediationRequested
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import InvalidTransition, ModelVersion
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit, stage

SOURCE = "urn:bdguard:remediation"
CONSUMER = "remediation"


class Refused(ValueError):
    """A well-formed request that cannot be acted on; the reason goes on the completed event."""


@dataclass(frozen=True)
class Job:
    """An admitted request: which version to remediate, the candidate's name, the clean data to use."""

    request: RemediationRequested
    parent: ModelVersion
    candidate: str
    clean_data: Path


def admit(request: RemediationRequested, event_id: str, uow: SqlUnitOfWork, *, clean_data: Path | None,
          out_dir: Path) -> Job | None:
    """The job to run, or None for a redelivery; raises :class:`Refused` before any CPU is spent."""
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return None
        try:
            parent, name = choose_parent(request.model, request.version, uow, out_dir)
        except (LookupError, InvalidTransition) as exc:
            raise Refused(str(exc)) from exc
    if clean_data is None:
        raise Refused("no clean data: the request names none and no default is configured")
    if not clean_data.is_file():
        raise Refused(f"clean data not found: {clean_data}")
    try:
        check_parent_bytes(parent)
    except ValueError as exc:
        raise Refused(str(exc)) from exc
    return Job(request, parent, name, clean_data)


def record_candidate(job: Job, candidate: Candidate, event_id: str, uow: SqlUnitOfWork) -> RemediationCompleted | None:
    """Candidate on the registry topic, the outcome, and the audit record — in one transaction."""
    request, correlation = job.request, _correlation(job.request, event_id)
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return None
        done = _completed(request, event_id, uow.now(), "proposed", candidate=candidate)
        stage(uow, build_message(candidate.event, source=SOURCE, correlation_id=correlation))
        stage(uow, build_message(done, source=SOURCE, correlation_id=correlation))
        audit_proposal(uow, candidate, request.requested_by, correlation_id=correlation)
        uow.processed.mark(CONSUMER, event_id, uow.now())
        uow.commit()
    return done


def record_refusal(request: RemediationRequested, status: str, reason: str, event_id: str,
                   uow: SqlUnitOfWork) -> RemediationCompleted | None:
    """A ``refused`` or ``failed`` outcome with its reason, audited like a proposal."""
    correlation = _correlation(request, event_id)
    with uow:
        if uow.processed.seen(CONSUMER, event_id):
            return None
        done = _completed(request, event_id, uow.now(), status, reason=reason[:500])
        stage(uow, build_message(done, source=SOURCE, correlation_id=correlation))
        audit(uow, actor=f"remediation:{request.requested_by}", action=f"remediation.{status}",
              subject=f"{request.model}/{request.version}",
              details={"reason": done.reason, "request_id": event_id, "incident_id": request.incident_id},
              correlation_id=correlation)
        uow.processed.mark(CONSUMER, event_id, uow.now())
        uow.commit()
    return done


def _correlation(request: RemediationRequested, event_id: str) -> str:
    return request.incident_id or event_id


def _completed(request: RemediationRequested, event_id: str, now: float, status: str, *,
               candidate: Candidate | None = None, reason: str | None = None) -> RemediationCompleted:
    return RemediationCompleted(
        request_id=event_id, model=request.model, version=request.version, status=status,
        requested_by=request.requested_by, completed_at=now, reason=reason, incident_id=request.incident_id,
        candidate_version=None if candidate is None else candidate.event.version,
        candidate_uri=None if candidate is None else candidate.event.artifact_uri,
        candidate_digest=None if candidate is None else candidate.event.artifact_digest,
        meets_bar=None if candidate is None else candidate.meets_bar,
        figures=None if candidate is None else candidate.summary())
