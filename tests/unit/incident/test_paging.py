"""Responders are paged from the published escalations: at least once, once per escalation event."""

from __future__ import annotations

import asyncio

import pytest

from services.incident.domain.incident import Escalation
from services.incident.domain.severity import Severity
from services.incident.service_layer.paging import escalation_of, page
from shared.ledger.model import Status
from tests.unit.response_world import World


@pytest.fixture
def world(sqlite_url: str) -> World:
    w = World(sqlite_url)
    w.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    return w


def test_a_published_escalation_pages_once_and_again_only_if_the_page_was_not_recorded(world: World) -> None:
    world.alert("digits", "2", "a-1", hint="critical")
    [record] = world.escalations()
    paged: list[Escalation] = []

    async def notify(e: Escalation) -> None:
        paged.append(e)

    assert asyncio.run(page(record, "incident.escalated.v1/0/7", world.uow, notify))
    assert not asyncio.run(page(record, "incident.escalated.v1/0/7", world.uow, notify))  # redelivered: no 2nd page
    assert [(e.incident_id, e.severity, e.action) for e in paged] == [
        (record.incident_id, Severity.CRITICAL, record.action)]
    assert paged[0].responders == tuple(record.responders) and "ciso" in paged[0].responders

    async def dies(e: Escalation) -> None:  # the worker dies while paging: nothing is marked, so it pages again
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        asyncio.run(page(record, "incident.escalated.v1/0/8", world.uow, dies))
    assert asyncio.run(page(record, "incident.escalated.v1/0/8", world.uow, notify)) and len(paged) == 2


def test_the_escalation_a_record_carries_is_the_one_the_incident_raised(world: World) -> None:
    outcome = world.alert("digits", "2", "a-1", hint="critical")
    [raised] = outcome.escalations
    [record] = world.escalations()
    assert escalation_of(record) == raised
