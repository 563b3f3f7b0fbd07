"""Composition root of the incident service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.incident.adapters.notifier import Notifier, NullNotifier, WebhookNotifier
from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.config import IncidentSettings
from services.incident.service_layer.handlers import (
    handle_alert,
    handle_remediation_completed,
    handle_rollback_completed,
)
from services.incident.service_layer.paging import page
from shared.contracts.records import Alert, IncidentEscalated, RemediationCompleted, RollbackCompleted
from shared.db.unit_of_work import uow_factory_for
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
PRODUCER = "incident"


@dataclass
class IncidentService:
    settings: IncidentSettings
    uow_factory: Callable[[], IncidentUnitOfWork]
    relay: OutboxRelay
    notifier: Notifier

    async def on_alert(self, delivery: Delivery) -> None:
        assert isinstance(delivery.record, Alert)
        outcome = handle_alert(delivery.record, delivery.attrs.id, self.uow_factory(), self.settings)
        await self.relay.flush()
        for escalation in outcome.escalations:  # responders are paged from the published record (on_escalated)
            log.info("incident escalated", incident_id=escalation.incident_id, severity=escalation.severity.label,
                     action=escalation.action)

    async def on_escalated(self, delivery: Delivery) -> None:
        """Page the responders of one published escalation (the correlator's, or a responder command's)."""
        assert isinstance(delivery.record, IncidentEscalated)
        await page(delivery.record, delivery.attrs.id, self.uow_factory, self.notifier.notify)

    async def on_rollback_completed(self, delivery: Delivery) -> None:
        assert isinstance(delivery.record, RollbackCompleted)
        handle_rollback_completed(delivery.record, delivery.attrs.id, self.uow_factory())

    async def on_remediation_completed(self, delivery: Delivery) -> None:
        assert isinstance(delivery.record, RemediationCompleted)
        handle_remediation_completed(delivery.record, delivery.attrs.id, self.uow_factory())


def bootstrap(settings: IncidentSettings, publisher: Publisher, *,
              uow_factory: Callable[[], IncidentUnitOfWork] | None = None,
              notifier: Notifier | None = None) -> IncidentService:
    if uow_factory is None:
        uow_factory = uow_factory_for(settings.database_url, PRODUCER, IncidentUnitOfWork)
    if notifier is None:
        notifier = (WebhookNotifier(settings.webhook_urls, secret=settings.webhook_secret,
                                    retries=settings.webhook_retries) if settings.webhook_urls else NullNotifier())
    return IncidentService(settings, uow_factory, OutboxRelay(uow_factory, publisher), notifier)
