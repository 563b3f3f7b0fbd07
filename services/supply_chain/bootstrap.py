"""Composition root of the supply-chain service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.model import ModelVersionPublished as PublishedEvent
from services.supply_chain.domain.model import SupplyChainVerdict as Verdict
from services.supply_chain.service_layer.handlers import already_handled, record_verdict, to_domain
from services.supply_chain.service_layer.validate import validate_model_version
from shared.contracts.records import ModelVersionPublished
from shared.db.unit_of_work import SqlUnitOfWork, uow_factory_for
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
PRODUCER = "supply-chain"
Validator = Callable[[PublishedEvent, SupplyChainSettings], Verdict]


@dataclass
class SupplyChainService:
    settings: SupplyChainSettings
    uow_factory: Callable[[], SqlUnitOfWork]
    relay: OutboxRelay
    validate: Validator

    async def on_published(self, delivery: Delivery) -> None:
        record = delivery.record
        assert isinstance(record, ModelVersionPublished)
        skip = already_handled(record, delivery.attrs.id, self.uow_factory())
        if skip:
            log.info("published event skipped", reason=skip)
            return
        # hashing, parsing and the sandboxed onnxruntime load are CPU/disk work: keep the loop free
        verdict = await asyncio.to_thread(self.validate, to_domain(record), self.settings)
        outcome = record_verdict(record, verdict, delivery.attrs.id, self.uow_factory())
        await self.relay.flush()
        if outcome.verdict is not None:
            log.info("supply-chain verdict", approved=outcome.verdict.approved,
                     failed=[c.name for c in outcome.verdict.checks if not c.passed])


def bootstrap(settings: SupplyChainSettings, publisher: Publisher, *,
              uow_factory: Callable[[], SqlUnitOfWork] | None = None,
              validate: Validator | None = None) -> SupplyChainService:
    if uow_factory is None:
        uow_factory = uow_factory_for(settings.database_url, PRODUCER, SqlUnitOfWork)
    return SupplyChainService(settings, uow_factory, OutboxRelay(uow_factory, publisher),
                              validate or (lambda event, s: validate_model_version(event, s)))
