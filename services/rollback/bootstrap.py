"""Composition root of the rollback service."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.rollback.adapters.serving import HttpServingControl, NoServing, ServingControl
from services.rollback.config import RollbackSettings
from services.rollback.service_layer.handlers import handle_escalation, replayed_serving_order, serving_order
from shared.contracts.records import IncidentEscalated
from shared.db.unit_of_work import SqlUnitOfWork, uow_factory_for
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
PRODUCER = "rollback"


@dataclass
class RollbackService:
    uow_factory: Callable[[], SqlUnitOfWork]
    relay: OutboxRelay
    serving: ServingControl
    clock: Callable[[], float] = time.time

    async def on_escalation(self, delivery: Delivery) -> None:
        esc = delivery.record
        assert isinstance(esc, IncidentEscalated)
        outcome = handle_escalation(esc, self.clock(), self.uow_factory())
        order = serving_order(outcome) if outcome is not None else replayed_serving_order(esc, self.uow_factory())
        if order is not None and order.target is not None:
            await self.serving.switch(order.target)
        elif order is not None and order.divert_reason is not None:
            await self.serving.divert(order.model, order.divert_reason)
        await self.relay.flush()  # also what a worker killed before its flush left in the outbox
        if outcome is not None:
            log.info("rollback done", status=outcome.completed.status, to_version=outcome.completed.to_version,
                     duration_ms=outcome.completed.duration_ms)


def bootstrap(settings: RollbackSettings, publisher: Publisher, *,
              uow_factory: Callable[[], SqlUnitOfWork] | None = None,
              serving: ServingControl | None = None) -> RollbackService:
    if uow_factory is None:
        uow_factory = uow_factory_for(settings.database_url, PRODUCER, SqlUnitOfWork)
    if serving is None and settings.serving_urls:
        serving = HttpServingControl(settings.serving_urls, admin_token=settings.serving_admin_token)
    return RollbackService(uow_factory, OutboxRelay(uow_factory, publisher), serving or NoServing())
