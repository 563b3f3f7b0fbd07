"""Event sequences a real deployment produces, through the incident handlers on a SQLite store: what a
responder expects of each (redeliveries, late and out-of-order alerts, clock skew, responder actions)."""

from __future__ import annotations

import pytest

from services.incident.domain.incident import IncidentStatus
from services.incident.domain.severity import Severity
from services.incident.service_layer.handlers import handle_alert, handle_rollback_completed, respond
from services.registry.service_layer.promote import promote
from services.supply_chain.domain.model import CheckResult
from services.supply_chain.domain.model import SupplyChainVerdict as Verdict
from services.supply_chain.service_layer.handlers import record_verdict
from shared import topics
from shared.contracts.records import Alert, ModelVersionPublished, RollbackCompleted
from shared.ledger.model import Status
from tests.unit.response_world import DIGEST, World


@pytest.fixture
def world(sqlite_url: str) -> World:
    w = World(sqlite_url)
    w.seed("digits", {"1": Status.SCANNED_CLEAN, "2": Status.SCANNED_CLEAN, "3": Status.PRODUCTION},
           production="3")
    return w


def test_an_alert_redelivered_under_a_new_event_id_is_correlated_once(world: World) -> None:
    first = world.alert("digits", "3", "a-1", hint="high", event_id="topic/0/10")
    world.clock += 5
    again = world.alert("digits", "3", "a-1", hint="high", event_id="topic/0/11")  # a producer retry
    assert again.duplicate and again.incident_id in (None, first.incident_id)
    incident = world.incident(first.incident_id)
    assert len(incident.signals) == 1 and len(world.escalations()) == 1
    assert [t["what"] for t in incident.timeline].count("alerted") == 1


def test_a_redelivered_alert_never_reopens_an_incident_marked_false_positive(world: World) -> None:
    first = world.alert("digits", "3", "a-1", event_id="topic/0/10")
    respond(first.incident_id or "", "false-positive", "alice", world.uow(), note="QA test traffic")
    world.clock += 60
    again = world.alert("digits", "3", "a-1", event_id="topic/0/99")
    assert again.duplicate
    assert len(world.incidents()) == 1 and len(world.escalations("rollback")) == 1  # the original one only


def test_a_late_alert_about_traffic_judged_false_positive_lands_on_that_incident_without_a_page(
        world: World) -> None:
    first = world.alert("digits", "3", "a-1", hint="high")
    world.clock += 120
    respond(first.incident_id or "", "false-positive", "alice", world.uow(), note="load test")
    decided_at = world.clock
    world.clock += 30  # the campaign view closes a window that ended before the decision
    late = world.alert("digits", "3", "a-2", kind="rare_input_pattern", hint="high", window_end=decided_at - 60)
    assert late.incident_id == first.incident_id and late.escalations == ()
    incident = world.incident(first.incident_id)
    assert incident.status is IncidentStatus.FALSE_POSITIVE and incident.timeline[-1]["what"] == "late_alert"
    assert len(world.incidents()) == 1 and world.escalations("rollback") == []
    assert "incident.late-alert" in world.audit_actions()

    world.clock += 30  # traffic after the decision is new evidence: the false positive does not mute it
    fresh = world.alert("digits", "3", "a-3", kind="rare_input_pattern", hint="high", window_end=world.clock)
    assert fresh.incident_id != first.incident_id and fresh.escalations


def test_out_of_order_alerts_keep_the_first_signal_time_and_escalate_when_handled(world: World) -> None:
    world.clock = 2_000.0
    first = world.alert("digits", "3", "a-2", hint="high", detected_at=1_990.0)
    world.clock = 2_010.0
    world.alert("digits", "3", "a-1", kind="rare_input_pattern", hint="high", detected_at=1_900.0)
    [investigate, rollback] = world.escalations()
    assert (investigate.action, rollback.action) == ("investigate", "rollback")
    assert rollback.first_signal_at == 1_900.0
    escalated = [t["at"] for t in world.incident(first.incident_id).timeline if t["what"] == "escalated"]
    assert escalated == [2_000.0, 2_010.0]


@pytest.mark.parametrize("skew_s", [3_600.0, -30 * 86_400.0])
def test_clock_skew_of_the_alert_producer_does_not_move_deadlines_or_the_timeline(world: World,
                                                                                   skew_s: float) -> None:
    outcome = world.alert("digits", "3", "a-1", detected_at=world.clock + skew_s)
    [escalation] = outcome.escalations
    assert escalation.respond_by == world.clock + 15 * 60  # from when the incident service saw it
    incident = world.incident(outcome.incident_id)
    assert incident.opened_at == incident.updated_at == world.clock
    assert all(t["at"] == world.clock for t in incident.timeline if t["what"] != "detected")
    world.clock += 60  # a follow-up alert still joins the incident
    assert world.alert("digits", "3", "a-2", kind="rare_input_pattern").incident_id == outcome.incident_id


def test_an_alert_for_a_version_the_ledger_does_not_know_is_investigated_never_rolled_back(world: World) -> None:
    outcome = world.alert("digits", "9", "a-1")
    [escalation] = outcome.escalations
    assert (escalation.severity, escalation.action) == (Severity.HIGH, "investigate")
    assert world.production("digits") == "3"


def test_an_alert_for_a_version_rolled_back_meanwhile_joins_its_incident_and_pages_nobody_again(
        world: World) -> None:
    first = world.alert("digits", "3", "a-1")
    [esc] = world.escalations("rollback")
    world.roll_back(esc)
    assert world.production("digits") == "2"
    world.clock += 30  # the last windows of the pulled version close late
    late = world.alert("digits", "3", "a-2", kind="rare_input_pattern")
    assert late.incident_id == first.incident_id and late.escalations == ()
    assert world.roll_back(esc) is None and len(world.rollbacks()) == 1


def test_alerts_for_several_models_at_once_open_one_incident_each_and_roll_each_back_once(
        world: World) -> None:
    world.seed("faces", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    world.seed("speech", {"a": Status.SCANNED_CLEAN, "b": Status.PRODUCTION}, production="b")
    for i, (model, version) in enumerate([("digits", "3"), ("faces", "2"), ("speech", "b")] * 2):
        world.alert(model, version, f"a-{i}")
    assert len(world.incidents()) == 3
    for esc in world.escalations("rollback"):
        world.roll_back(esc)
    assert [world.production(m) for m in ("digits", "faces", "speech")] == ["2", "1", "a"]
    assert world.audit_actions().count("rollback.completed") == 3


def test_a_responder_confirming_an_incident_already_rolled_back_keeps_the_rollback_and_triggers_no_second(
        world: World) -> None:
    outcome = world.alert("digits", "3", "a-1")
    [esc] = world.escalations("rollback")
    world.roll_back(esc)
    world.clock += 300
    incident = respond(outcome.incident_id or "", "confirm", "alice", world.uow())
    assert (incident.status, incident.severity, incident.action) == (IncidentStatus.CONFIRMED, Severity.CRITICAL,
                                                                    "rollback")
    for again in world.escalations("rollback"):
        assert world.roll_back(again) is None
    assert world.production("digits") == "2" and len(world.rollbacks()) == 1
    assert world.audit_actions().count("rollback.completed") == 1


def test_a_backdoor_confirmed_in_a_version_no_longer_serving_is_quarantined_so_no_rollback_returns_to_it(
        world: World) -> None:
    outcome = world.alert("digits", "3", "a-1", kind="rare_input_pattern", hint="high")  # investigate only
    world.clock += 60
    promote("digits", "2", "release-manager", world.uow())  # 3 leaves production
    respond(outcome.incident_id or "", "confirm", "alice", world.uow())
    assert world.version("digits", "3").status is Status.QUARANTINED
    world.alert("digits", "2", "b-1")  # now the serving version goes bad too
    [esc] = [e for e in world.escalations("rollback") if e.version == "2"]
    done = world.roll_back(esc)
    assert done is not None and done.completed.to_version == "1"
    assert "incident.confirm" in world.audit_actions()


def test_a_rollback_completed_before_its_incident_is_known_is_kept_as_an_open_critical_incident(
        world: World) -> None:
    done = RollbackCompleted(incident_id="inc-elsewhere", model="digits", from_version="3", status="completed",
                             traffic_diverted=False, escalation_received_at=990.0, completed_at=991.0,
                             duration_ms=1000.0, to_version="2", affected={"served_since": 50.0})
    handle_rollback_completed(done, "evt-rb", world.uow())
    assert not handle_rollback_completed(done, "evt-rb", world.uow())  # redelivered
    incident = world.incident("inc-elsewhere")
    assert incident.is_open and incident.severity is Severity.CRITICAL
    assert [t["what"] for t in incident.timeline] == ["rolled_back"]
    assert incident.affected == {"served_since": 50.0}
    assert "incident.rollback-without-incident" in world.audit_actions()


def test_a_tampered_artifact_under_the_serving_version_id_is_no_evidence_against_the_serving_bytes(
        world: World) -> None:
    published = ModelVersionPublished(model="digits", version="3", artifact_uri="file:///other.onnx",
                                      artifact_digest="sha256:" + "cd" * 32, source_url="https://huggingface.co/acme/d",
                                      submitter="ci")
    check = CheckResult("source", True, "critical", "ok")
    verdict = Verdict(model="digits", version="3", approved=True, checks=(check,), rationale="r",
                      artifact_digest=published.artifact_digest, artifact_uri=published.artifact_uri)
    record_verdict(published, verdict, "evt-pub", world.uow())
    [rejected] = world.staged(topics.ALERTS)
    handle_alert(Alert(**rejected), "evt-sc", world.uow(), world.settings)
    world.clock += 60  # one uncorroborated telemetry alert: on its own it waits for corroboration
    outcome = world.alert("digits", "3", "a-1", hint="high")
    assert outcome.escalations[-1].action == "investigate" and world.escalations("rollback") == []
    mv = world.version("digits", "3")
    assert (mv.status, mv.artifact_digest, world.production("digits")) == (Status.PRODUCTION, DIGEST, "3")
