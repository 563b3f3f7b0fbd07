"""Composition root of the remediation service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.remediation.config import RemediationSettings
from services.remediation.service_layer.candidate import Candidate, Remediator, build_candidate, fine_pruning
from services.remediation.service_layer.handlers import Job, Refused, admit, record_candidate, record_refusal
from shared.contracts.records import RemediationCompleted, RemediationRequested
from shared.db.unit_of_work import SqlUnitOfWork, uow_factory_for
from shared.files import local_path
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
PRODUCER = "remediation"


@dataclass
class RemediationService:
    settings: RemediationSettings
    uow_factory: Callable[[], SqlUnitOfWork]
    relay: OutboxRelay
    remediator: Remediator

    async def on_remediation_requested(self, delivery: Delivery) -> None:
        request = delivery.record
        assert isinstance(request, RemediationRequested)
        done = await self._handle(request, delivery.attrs.id)
        await self.relay.flush()
        if done is not None:
            log.info("remediation recorded", status=done.status, candidate=done.candidate_version,
                     meets_bar=done.meets_bar, reason=done.reason)

    async def _handle(self, request: RemediationRequested, event_id: str) -> RemediationCompleted | None:
        try:
            job = admit(request, event_id, self.uow_factory(), clean_data=self._clean_data(request),
                        out_dir=self.settings.out_dir)
        except Refused as exc:
            return record_refusal(request, "refused", str(exc), event_id, self.uow_factory())
        if job is None:
            return None
        try:  # minutes of numpy: off the event loop, so the consumer keeps heartbeating
            candidate = await asyncio.to_thread(self._build, job)
        except Exception as exc:  # reported on the bus, never retried forever (a redelivery would fail again)
            log.warning("remediation failed", error=str(exc))
            return record_refusal(request, "failed", f"{type(exc).__name__}: {exc}", event_id, self.uow_factory())
        return record_candidate(job, candidate, event_id, self.uow_factory())

    def _build(self, job: Job) -> Candidate:
        return build_candidate(job.parent, job.candidate, job.clean_data, remediator=self.remediator,
                               out_dir=self.settings.out_dir, who=job.request.requested_by,
                               source_url=self.settings.source_url, signing_key=self.settings.signing_key)

    def _clean_data(self, request: RemediationRequested) -> Path | None:
        """The request's clean data only from an allowed folder: a request must not make the service
        read whatever file it names."""
        if not request.clean_data_uri:
            return self.settings.default_clean_data
        named = local_path(request.clean_data_uri).resolve()
        if not any(named.is_relative_to(folder.resolve()) for folder in self.settings.clean_data_dirs):
            raise Refused(f"clean data {request.clean_data_uri!r} is outside the allowed folders "
                          "(BDGUARD_REMEDIATION_CLEAN_DATA_DIRS)")
        return named


def bootstrap(settings: RemediationSettings, publisher: Publisher, *,
              uow_factory: Callable[[], SqlUnitOfWork] | None = None,
              remediator: Remediator | None = None) -> RemediationService:
    if uow_factory is None:
        uow_factory = uow_factory_for(settings.database_url, PRODUCER, SqlUnitOfWork)
    if remediator is None:
        remediator = fine_pruning(rounds=settings.rounds, nc_seconds=settings.nc_seconds)
    return RemediationService(settings, uow_factory, OutboxRelay(uow_factory, publisher), remediator)
