"""Rollback sequences a real deployment produces, through the handlers on a SQLite store: never to a bad
version, once per incident across crashes, and the servers told even when the first attempt died."""

from __future__ import annotations

import pytest

from services.incident.service_layer.handlers import respond
from services.registry.service_layer.promote import promote
from services.rollback.bootstrap import RollbackService
from services.rollback.service_layer.handlers import handle_escalation
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.ledger.model import DEPLOYABLE, ModelVersion, Status
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import RecordingPublisher
from tests.unit.response_world import World


@pytest.fixture
def world(sqlite_url: str) -> World:
    return World(sqlite_url)


class Servers:
    """What the rollback service told the inference servers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def switch(self, target: ModelVersion) -> None:
        self.calls.append(("switch", target.version))

    async def divert(self, model: str, reason: str) -> None:
        self.calls.append(("divert", model))


def test_a_quarantined_or_rejected_previous_version_is_skipped_for_the_last_clean_one(world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.REJECTED, "3": Status.QUARANTINED,
                          "4": Status.ROLLED_BACK, "5": Status.PRODUCTION}, production="5")
    world.alert("digits", "5", "a-1")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and done.completed.to_version == "1" and world.production("digits") == "1"


def test_with_no_clean_version_left_production_is_diverted_and_escalated_never_moved_to_a_bad_one(
        world: World) -> None:
    world.seed("digits", {"1": Status.QUARANTINED, "2": Status.REJECTED, "3": Status.PRODUCTION}, production="3")
    world.alert("digits", "3", "a-1")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and done.completed.status == "no_safe_version" and done.completed.traffic_diverted
    assert world.production("digits") == "3"  # the alias is not moved onto a quarantined or rejected version
    assert world.version("digits", "3").details["traffic_diverted"] is True
    [page] = [e for e in world.escalations() if e.summary.startswith("NO SAFE VERSION")]
    assert page.severity == "critical"
    assert world.audit_actions().count("rollback.no_safe_version") == 1


def test_each_version_that_goes_bad_in_turn_is_pulled_and_the_last_one_is_diverted(world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.SCANNED_CLEAN, "3": Status.PRODUCTION},
               production="3")
    for version, expected in [("3", "2"), ("2", "1"), ("1", None)]:
        world.clock += 60
        world.alert("digits", version, f"a-{version}")
        [esc] = [e for e in world.escalations("rollback") if e.version == version]
        done = world.roll_back(esc)
        assert done is not None and done.completed.to_version == expected
    assert all(v.status not in DEPLOYABLE for v in [world.version("digits", v) for v in "123"])


def test_a_rollback_redelivered_after_a_crash_rolls_back_once_with_one_audit_record(world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    world.alert("digits", "2", "a-1")
    [esc] = world.escalations("rollback")
    assert handle_escalation(esc, received_at=world.clock, uow=world.uow()) is not None
    world.clock += 5
    assert handle_escalation(esc, received_at=world.clock, uow=world.uow()) is None
    assert world.audit_actions().count("rollback.completed") == 1 and len(world.rollbacks()) == 1


def _delivery(record: object) -> Delivery:
    attrs = CloudEventAttributes(source="urn:test", type="t", subject="digits/2", correlationid="c", id="evt-esc")
    return Delivery(record, attrs, topics.INCIDENT_ESCALATED, 0, 7)  # type: ignore[arg-type]


@pytest.mark.parametrize(("statuses", "told"), [
    ({"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, ("switch", "1")),
    ({"1": Status.QUARANTINED, "2": Status.PRODUCTION}, ("divert", "digits")),
])
async def test_a_worker_killed_after_the_commit_still_tells_the_servers_and_publishes_on_redelivery(
        world: World, statuses: dict[str, Status], told: tuple[str, str]) -> None:
    world.seed("digits", statuses, production="2")
    world.alert("digits", "2", "a-1")
    [esc] = world.escalations("rollback")
    handle_escalation(esc, received_at=world.clock, uow=world.uow())  # committed, then the worker died
    servers, publisher = Servers(), RecordingPublisher()
    service = RollbackService(world.uow, OutboxRelay(world.uow, publisher), servers, clock=lambda: world.clock)
    await service.on_escalation(_delivery(esc))  # the redelivery
    assert servers.calls == [told]
    assert [m.topic for m in publisher.sent].count(topics.ROLLBACK_COMPLETED) == 1
    assert world.audit_actions().count("rollback.completed") + world.audit_actions().count(
        "rollback.no_safe_version") == 1


def test_a_version_replaced_by_a_release_while_its_incident_was_open_is_quarantined_and_exposure_ends_there(
        world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION, "3": Status.SCANNED_CLEAN},
               production="2")
    world.alert("digits", "2", "a-1", hint="high")  # investigate: waits for corroboration
    world.clock += 60
    replaced_at = world.clock
    promote("digits", "3", "release-manager", world.uow())
    world.clock += 60  # the late windows of the replaced version corroborate
    world.alert("digits", "2", "a-2", kind="rare_input_pattern", hint="high")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and world.production("digits") == "3"
    assert world.version("digits", "2").status is Status.QUARANTINED
    assert done.completed.affected is not None and done.completed.affected["until"] == replaced_at


def test_a_rollback_skips_a_version_under_an_open_backdoor_incident_when_an_older_clean_one_exists(
        world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.SCANNED_CLEAN, "3": Status.PRODUCTION},
               production="3")
    world.alert("digits", "2", "c-1", kind="rare_input_pattern", hint="high")  # canary traffic of version 2
    world.alert("digits", "3", "a-1")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and done.completed.to_version == "1"
    assert "skipped 2" in done.plan.reason


def test_a_version_whose_incident_a_responder_closed_is_a_rollback_target_again(world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.SCANNED_CLEAN, "3": Status.PRODUCTION},
               production="3")
    canary = world.alert("digits", "2", "c-1", kind="rare_input_pattern", hint="high")
    assert world.version("digits", "2").open_incident == canary.incident_id
    respond(canary.incident_id or "", "false-positive", "alice", world.uow(), note="benign canary traffic")
    assert world.version("digits", "2").open_incident is None
    world.clock += 10
    world.alert("digits", "3", "a-1")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and done.completed.to_version == "2"


def test_when_every_clean_version_is_under_an_open_incident_the_latest_is_taken_and_the_reason_says_so(
        world: World) -> None:
    world.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    world.alert("digits", "1", "c-1", kind="rare_input_pattern", hint="high")
    world.alert("digits", "2", "a-1")
    [esc] = world.escalations("rollback")
    done = world.roll_back(esc)
    assert done is not None and done.completed.to_version == "1" and "under open incident" in done.plan.reason
