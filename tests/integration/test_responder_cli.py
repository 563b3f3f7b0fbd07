"""Responders act on incidents from the command line; every action lands in the audit trail."""

from __future__ import annotations

import json

import pytest
from click.testing import Result
from typer.testing import CliRunner

from services.cli import app, build_app
from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.config import IncidentSettings
from services.incident.service_layer.handlers import handle_alert
from shared.contracts.records import Alert
from shared.db.engine import make_engine, make_session_factory


@pytest.fixture
def incident_id(sqlite_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BDGUARD_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    sessions = make_session_factory(make_engine(sqlite_url))
    alert = Alert(alert_id="a-1", model="digits", version="2", kind="rare_input_pattern", severity_hint="high",
                  source="telemetry", detected_at=100.0, evidence={})
    outcome = handle_alert(alert, "evt-1", IncidentUnitOfWork(sessions), IncidentSettings())
    assert outcome.incident_id is not None
    return outcome.incident_id


def _run(*args: str) -> Result:
    build_app()
    return CliRunner().invoke(app, list(args))


def test_a_responder_acknowledges_then_resolves_and_cannot_act_on_a_closed_incident(incident_id: str) -> None:
    assert _run("incident", "ack", incident_id, "--by", "alice").exit_code == 0
    assert _run("incident", "resolve", incident_id, "--by", "alice", "--note", "fixed").exit_code == 0
    again = _run("incident", "ack", incident_id, "--by", "bob")
    assert again.exit_code == 1 and "resolved" in again.output
    shown = json.loads(_run("incident", "show", incident_id).output)
    assert [t["what"] for t in shown["timeline"]][-2:] == ["acknowledged", "resolved"]
    listed = json.loads(_run("incident", "list", "--json").output)
    assert listed[0]["status"] == "resolved"


def test_every_responder_action_is_in_the_verified_audit_trail(incident_id: str) -> None:
    _run("incident", "false-positive", incident_id, "--by", "carol", "--reason", "load test")
    verified = _run("audit", "verify")
    report = json.loads(verified.output)
    assert verified.exit_code == 0 and report["ok"] and report["records"] >= 2


def test_an_unknown_incident_is_a_clear_error(incident_id: str) -> None:
    result = _run("incident", "confirm", "inc-nope", "--by", "alice")
    assert result.exit_code == 1 and "no incident" in result.output
