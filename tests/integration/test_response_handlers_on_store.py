"""Incident, rollback, registry and supply-chain handlers against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.config import IncidentSettings
from services.incident.service_layer.handlers import handle_alert, handle_remediation_completed, respond
from services.registry.service_layer.promote import promote
from services.rollback.service_layer.handlers import handle_escalation
from services.supply_chain.domain.model import CheckResult
from services.supply_chain.domain.model import SupplyChainVerdict as Verdict
from services.supply_chain.service_layer.handlers import already_handled, record_verdict
from shared import topics
from shared.contracts.records import Alert, IncidentEscalated, ModelVersionPublished, RemediationCompleted
from shared.db.engine import make_engine, make_session_factory
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import InvalidTransition, ModelVersion, Status

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def incident_uow(store_url: str) -> Callable[[], IncidentUnitOfWork]:
    sessions = make_session_factory(make_engine(store_url))
    return lambda: IncidentUnitOfWork(sessions)


def _seed(uow: SqlUnitOfWork, model: str, statuses: dict[str, Status], production: str | None) -> None:
    with uow:
        for i, (version, status) in enumerate(statuses.items()):
            uow.ledger.add(ModelVersion(model, version, f"file:///{version}.onnx", DIGEST, status=status,
                                        created_at=float(i), updated_at=float(i),
                                        details={"promoted_at": 50.0} if version == production else {}))
        if production:
            uow.ledger.set_production(model, production, 50.0)
        uow.commit()


def _alert(model: str, version: str, alert_id: str, kind: str = "targeted_misclassification") -> Alert:
    return Alert(alert_id=alert_id, model=model, version=version, kind=kind, severity_hint="critical",
                 source="telemetry", detected_at=100.0, evidence={"share": 0.42}, target_class=7,
                 window_start=90.0, window_end=100.0, first_prediction_id="p-17", last_prediction_id="p-99")


def _staged(uow: SqlUnitOfWork, topic: str) -> list[dict]:
    with uow:
        return [orjson.loads(r["value"]) for r in uow.outbox.pending() if r["topic"] == topic]


def test_a_backdoor_alert_on_production_is_rolled_back_once_to_the_last_clean_version(
        incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    _seed(incident_uow(), "digits", {"1": Status.SCANNED_CLEAN, "2": Status.QUARANTINED, "3": Status.PRODUCTION},
          production="3")
    outcome = handle_alert(_alert("digits", "3", "a-1"), "evt-1", incident_uow(), IncidentSettings())
    [escalation] = _staged(incident_uow(), topics.INCIDENT_ESCALATED)
    assert (escalation["severity"], escalation["action"], escalation["first_prediction_id"]) == (
        "critical", "rollback", "p-17")
    assert handle_alert(_alert("digits", "3", "a-1"), "evt-1", incident_uow(), IncidentSettings()).duplicate

    esc = IncidentEscalated(**escalation)
    done = handle_escalation(esc, received_at=200.0, uow=incident_uow())
    assert done is not None and done.completed.status == "completed" and done.completed.to_version == "1"
    assert done.completed.affected["served_since"] == 50.0
    assert handle_escalation(esc, received_at=201.0, uow=incident_uow()) is None  # replayed: no second rollback
    with incident_uow() as uow:
        assert uow.ledger.production_version("digits") == "1"
        assert {v.version: v.status for v in uow.ledger.list("digits")} == {
            "1": Status.PRODUCTION, "2": Status.QUARANTINED, "3": Status.ROLLED_BACK}
        assert uow.incidents.get(outcome.incident_id or "") is not None
    assert len(_staged(incident_uow(), topics.ROLLBACK_COMPLETED)) == 1


def test_no_safe_version_is_never_silent(incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    _seed(incident_uow(), "solo", {"1": Status.PRODUCTION}, production="1")
    esc = IncidentEscalated(incident_id="inc-x", model="solo", version="1", severity="critical", action="rollback",
                            confidence=0.9, summary="s", respond_by=1.0, responders=[], alert_ids=["a"])
    done = handle_escalation(esc, received_at=10.0, uow=incident_uow())
    assert done is not None and done.completed.status == "no_safe_version" and done.completed.traffic_diverted
    escalations = _staged(incident_uow(), topics.INCIDENT_ESCALATED)
    assert any("NO SAFE VERSION" in e["summary"] and e["severity"] == "critical" for e in escalations)


def test_a_remediation_outcome_lands_on_its_incident_timeline_once(
        incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    _seed(incident_uow(), "digits", {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    outcome = handle_alert(_alert("digits", "2", "a-5"), "evt-5", incident_uow(), IncidentSettings())
    done = RemediationCompleted(request_id="req-1", model="digits", version="2", status="proposed",
                                requested_by="alice", completed_at=300.0, incident_id=outcome.incident_id,
                                candidate_version="2-fp1", meets_bar=True, figures={"asr_after": 0.01})
    assert handle_remediation_completed(done, "evt-r1", incident_uow())
    assert not handle_remediation_completed(done, "evt-r1", incident_uow())  # redelivered
    assert not handle_remediation_completed(RemediationCompleted(  # not tied to an incident: nothing to note
        request_id="req-2", model="digits", version="2", status="refused", requested_by="bob", completed_at=301.0,
        reason="no clean data"), "evt-r2", incident_uow())
    with incident_uow() as uow:
        incident = uow.incidents.get(outcome.incident_id or "")
    assert incident is not None
    notes = [e for e in incident.timeline if e["what"] == "remediation proposed"]
    assert len(notes) == 1 and notes[0]["candidate_version"] == "2-fp1" and notes[0]["meets_bar"] is True


def test_a_false_positive_is_audited_and_kept_as_detector_feedback(
        incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    _seed(incident_uow(), "digits", {"1": Status.PRODUCTION}, production="1")
    outcome = handle_alert(_alert("digits", "1", "a-9", kind="rare_input_pattern"), "evt-9", incident_uow(),
                           IncidentSettings())
    respond(outcome.incident_id or "", "false-positive", "alice", incident_uow(), note="QA test traffic")
    with incident_uow() as uow:
        [feedback] = uow.incidents.feedback("digits")
        actions = [e.action for e in uow.audit.iterate()]
    assert feedback["verdict"] == "false_positive" and feedback["alert_kinds"] == ["rare_input_pattern"]
    assert "incident.false-positive" in actions


def test_only_scanned_clean_versions_can_be_promoted(incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    _seed(incident_uow(), "digits", {"1": Status.SCANNED_CLEAN, "2": Status.QUARANTINED}, production=None)
    assert promote("digits", "1", "rm", incident_uow()).replaced is None
    with pytest.raises(InvalidTransition, match="quarantined"):
        promote("digits", "2", "rm", incident_uow())


def _verdict(approved: bool) -> Verdict:
    check = CheckResult("source", approved, "critical", "ok" if approved else "typosquat of huggingface.co")
    return Verdict(model="digits", version="7", approved=approved, checks=(check,), rationale="r",
                   artifact_digest=DIGEST, artifact_uri="file:///m.onnx")


def _published(digest: str = DIGEST) -> ModelVersionPublished:
    return ModelVersionPublished(model="digits", version="7", artifact_uri="file:///m.onnx", artifact_digest=digest,
                                 source_url="https://huggingface.co/acme/digits", submitter="ci")


@pytest.mark.parametrize("approved", [True, False])
def test_a_supply_chain_verdict_updates_the_ledger_and_announces_the_next_step(
        approved: bool, incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    record_verdict(_published(), _verdict(approved), "evt-1", incident_uow())
    with incident_uow() as uow:
        mv = uow.ledger.get("digits", "7")
    assert mv is not None and mv.status is (Status.VALIDATED if approved else Status.REJECTED)
    assert len(_staged(incident_uow(), topics.SCAN_REQUESTED)) == int(approved)
    alerts = _staged(incident_uow(), topics.ALERTS)
    assert [a["kind"] for a in alerts] == ([] if approved else ["supply_chain_rejected"])
    assert already_handled(_published(), "evt-2", incident_uow()) is not None


def test_a_second_artifact_under_an_existing_version_is_refused(
        incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    record_verdict(_published(), _verdict(True), "evt-1", incident_uow())
    swapped = _published("sha256:" + "cd" * 32)
    assert already_handled(swapped, "evt-2", incident_uow()) is None
    outcome = record_verdict(swapped, _verdict(True), "evt-2", incident_uow())
    assert outcome.verdict is not None and not outcome.verdict.approved
    assert "possible tampering" in outcome.verdict.rationale


def test_the_registry_view_shows_what_was_approved_and_why_others_were_rejected(
        incident_uow: Callable[[], IncidentUnitOfWork]) -> None:
    from services.registry.service_layer.views import registry_view

    record_verdict(_published(), _verdict(False), "evt-1", incident_uow())
    [row] = registry_view(incident_uow(), "digits")
    assert (row["status"], row["supply_chain_failed"]) == ("rejected", ["source"])
    assert row["decisions"][0]["decision"] == "supply-chain.rejected"
    assert row["decisions"][0]["rationale"] == "r"
