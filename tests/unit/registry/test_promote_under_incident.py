"""Promoting a version that an open backdoor incident names: refused unless forced with a reason, and both the
refusal and the forced promotion are on the audit trail (with the incident, who, and why)."""

from __future__ import annotations

import pytest

from services.incident.service_layer.handlers import respond
from services.registry.service_layer.promote import UnderOpenIncident, promote
from services.registry.service_layer.views import registry_view
from shared.ledger.model import InvalidTransition, Status
from tests.unit.response_world import World


@pytest.fixture
def world(sqlite_url: str) -> World:
    w = World(sqlite_url)
    w.seed("digits", {"1": Status.PRODUCTION, "2": Status.SCANNED_CLEAN}, production="1")
    return w


def _canary_incident(world: World) -> str:
    """A canary's backdoor alert on version 2 (not serving): the incident service names it on 2's entry."""
    outcome = world.alert("digits", "2", "c-1", kind="rare_input_pattern", hint="high")
    assert outcome.incident_id is not None and world.version("digits", "2").open_incident == outcome.incident_id
    return outcome.incident_id


def test_a_version_under_an_open_backdoor_incident_is_not_promoted_and_the_refusal_names_the_incident(
        world: World) -> None:
    incident_id = _canary_incident(world)
    with pytest.raises(UnderOpenIncident) as refused:
        promote("digits", "2", "bob", world.uow())
    assert refused.value.incident_id == incident_id and incident_id in str(refused.value)
    assert "digits/2" in str(refused.value) and "force" in str(refused.value)
    assert world.production("digits") == "1" and world.version("digits", "2").status is Status.SCANNED_CLEAN


def test_the_refusal_is_on_the_audit_trail_with_the_incident_and_who_asked(world: World) -> None:
    incident_id = _canary_incident(world)
    with pytest.raises(UnderOpenIncident):
        promote("digits", "2", "bob", world.uow())
    assert "registry.promoted" not in world.audit_actions()
    [entry] = [e for e in world.audit() if e.action == "registry.promotion-refused"]
    assert (entry.actor, entry.subject) == ("release:bob", "digits/2")
    assert entry.details["incident_id"] == incident_id
    [row] = [r for r in registry_view(world.uow(), "digits") if r["version"] == "2"]
    assert row["decisions"][-1]["decision"] == "registry.promotion-refused"  # `bdguard registry view` shows it


def test_a_forced_promotion_goes_through_and_its_audit_record_says_over_which_incident_by_whom_and_why(
        world: World) -> None:
    incident_id = _canary_incident(world)
    done = promote("digits", "2", "bob", world.uow(), force=True, reason="canary alert is benign traffic")
    assert done.replaced == "1" and done.forced_over_incident == incident_id
    assert world.production("digits") == "2" and world.version("digits", "2").status is Status.PRODUCTION
    [entry] = [e for e in world.audit() if e.action == "registry.promoted"]
    assert entry.actor == "release:bob" and entry.subject == "digits/2"
    assert entry.details["forced_over_incident"] == incident_id
    assert entry.details["reason"] == "canary alert is benign traffic"


def test_forcing_without_a_reason_is_refused_before_anything_changes(world: World) -> None:
    _canary_incident(world)
    before = world.audit_actions()
    with pytest.raises(ValueError, match="reason"):
        promote("digits", "2", "bob", world.uow(), force=True, reason="  ")
    assert world.production("digits") == "1" and world.audit_actions() == before


def test_once_a_responder_closes_the_incident_the_version_is_promoted_without_force(world: World) -> None:
    incident_id = _canary_incident(world)
    respond(incident_id, "false-positive", "alice", world.uow(), note="benign canary traffic")
    assert promote("digits", "2", "bob", world.uow()).replaced == "1"
    [entry] = [e for e in world.audit() if e.action == "registry.promoted"]
    assert "forced_over_incident" not in entry.details


def test_a_version_without_an_incident_is_promoted_as_before_and_its_record_names_no_force(world: World) -> None:
    assert promote("digits", "2", "bob", world.uow(), force=True, reason="not needed").forced_over_incident is None
    [entry] = [e for e in world.audit() if e.action == "registry.promoted"]
    assert entry.details == {"replaced": "1"}


@pytest.mark.parametrize(("version", "refusal"), [("9", LookupError), ("3", InvalidTransition)])
def test_every_refused_promotion_is_on_the_audit_trail_with_its_reason(world: World, version: str,
                                                                        refusal: type[Exception]) -> None:
    world.seed("digits", {"3": Status.QUARANTINED})
    with pytest.raises(refusal) as refused:
        promote("digits", version, "carol", world.uow())
    [entry] = [e for e in world.audit() if e.action == "registry.promotion-refused"]
    assert (entry.actor, entry.subject) == ("release:carol", f"digits/{version}")
    assert entry.details["reason"] == str(refused.value)
    assert world.production("digits") == "1"
