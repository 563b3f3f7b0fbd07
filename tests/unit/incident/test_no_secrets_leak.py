"""Webhook tokens and keys never reach logs, the audit trail, the outbox or the incident store."""

from __future__ import annotations

import sqlalchemy as sa
from structlog.testing import capture_logs

from services.incident.adapters.notifier import WebhookNotifier
from services.incident.config import IncidentSettings
from services.incident.domain.incident import Escalation
from services.incident.domain.severity import Severity
from services.incident.service_layer.handlers import respond
from shared.ledger.model import Status
from tests.unit.response_world import World

TOKEN = "XoXbT0kenInThePath"
HOOK = f"http://127.0.0.1:9/services/T000/B000/{TOKEN}?token={TOKEN}"  # nothing listens on the discard port
SECRET = "hmac-s3cret-key"


def _escalation() -> Escalation:
    return Escalation("inc-1", "digits", "3", Severity.CRITICAL, "rollback", 0.9, "s", 1.0, ("ciso",), ("a-1",))


async def test_an_unreachable_webhook_is_logged_without_its_token() -> None:
    with capture_logs() as logs:
        await WebhookNotifier([HOOK], secret=SECRET, retries=1, backoff_s=0.0).notify(_escalation())
    assert [e["event"] for e in logs] == ["webhook unreachable", "webhook unreachable", "webhook gave up"]
    assert all(e["url"] == "http://127.0.0.1:9/***" for e in logs)
    assert TOKEN not in repr(logs) and SECRET not in repr(logs)


def test_incident_decisions_keep_no_secret_in_audit_outbox_or_store(sqlite_url: str) -> None:
    world = World(sqlite_url, IncidentSettings(webhook_urls=[HOOK], webhook_secret=SECRET))
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    outcome = world.alert("digits", "2", "a-1")
    [esc] = world.escalations("rollback")
    world.roll_back(esc)
    respond(outcome.incident_id or "", "confirm", "alice", world.uow())
    dump = []
    with world.uow() as uow:
        for table in ("audit_records", "outbox", "incidents", "model_versions", "detector_feedback"):
            dump += [repr(row) for row in uow.session.execute(sa.text(f"SELECT * FROM {table}"))]
    assert dump and not any(TOKEN in row or SECRET in row for row in dump)
    assert {"incident.escalated.critical", "rollback.completed", "incident.confirm"} <= set(world.audit_actions())
