"""Paging responders from the published escalations (at least once).

An escalation is committed to the outbox with the incident, and the outbox is published at least once;
paging from the published ``incident.escalated.v1`` record, and marking it paged only after the notifier
returned, means a worker killed between its commit and the webhook call pages on redelivery instead of
never. A page that was sent but not yet marked is sent again after a crash (responders may see one twice,
never zero times). The notifier itself retries and gives up with a log line, without raising.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.domain.incident import Escalation
from services.incident.domain.severity import Severity
from shared.contracts.records import IncidentEscalated

PAGER = "incident.pager"  # its own idempotency namespace: the correlator marks the same event ids


def escalation_of(record: IncidentEscalated) -> Escalation:
    """The domain escalation a published record carries."""
    return Escalation(record.incident_id, record.model, record.version, Severity[record.severity.upper()],
                      record.action, record.confidence, record.summary, record.respond_by,
                      tuple(record.responders), tuple(record.alert_ids))


async def page(record: IncidentEscalated, event_id: str, uow_factory: Callable[[], IncidentUnitOfWork],
               notify: Callable[[Escalation], Awaitable[None]]) -> bool:
    """Send one escalation to the responders unless it was paged already; returns whether it was sent."""
    with uow_factory() as uow:
        if uow.processed.seen(PAGER, event_id):
            return False
    await notify(escalation_of(record))
    with uow_factory() as uow:
        uow.processed.mark(PAGER, event_id, uow.now())
        uow.commit()
    return True
