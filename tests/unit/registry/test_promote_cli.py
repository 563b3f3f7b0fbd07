"""``bdguard registry promote`` of a version under an open backdoor incident: one line naming the version, the
incident and the override, exit 1 (the registry's refusal); ``--force --reason`` promotes it."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from services import cli
from services.registry.entrypoints import cli as registry_cli
from shared.ledger.model import Status
from tests.unit.response_world import World


@pytest.fixture
def world(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("BDGUARD_DATABASE_URL", sqlite_url)
    w = World(sqlite_url)
    w.seed("digits", {"1": Status.PRODUCTION, "2": Status.SCANNED_CLEAN}, production="1")
    return w


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The audit mirror's flushes to Kafka, recorded instead of sent (no broker needed)."""
    calls: list[str] = []

    async def flush_once(factory: Any, bootstrap: str) -> int:
        calls.append(bootstrap)
        return 0

    monkeypatch.setattr(registry_cli, "flush_once", flush_once)
    return calls


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["bdguard", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return int(exit_.value.code or 0), capsys.readouterr().err


def _incident_on_2(world: World) -> str:
    outcome = world.alert("digits", "2", "c-1", kind="rare_input_pattern", hint="high")
    assert outcome.incident_id is not None
    return outcome.incident_id


def test_promoting_a_version_under_an_open_incident_is_refused_in_one_line_naming_it_and_the_override(
        world: World, flushes: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    incident_id = _incident_on_2(world)
    code, err = _main(monkeypatch, capsys, "registry", "promote", "digits", "2", "--who", "bob")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert all(needle in err for needle in ("digits/2", incident_id, "--force", "--reason")), err
    assert world.production("digits") == "1"
    assert "registry.promotion-refused" in world.audit_actions() and flushes  # the refusal's mirror is sent


def test_force_without_a_reason_is_a_usage_error_and_changes_nothing(
        world: World, flushes: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _incident_on_2(world)
    before = world.audit_actions()
    code, err = _main(monkeypatch, capsys, "registry", "promote", "digits", "2", "--force")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--reason" in err, err
    assert world.production("digits") == "1" and world.audit_actions() == before


def test_force_with_a_reason_promotes_and_says_over_which_incident(
        world: World, flushes: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    incident_id = _incident_on_2(world)
    code, err = _main(monkeypatch, capsys, "registry", "promote", "digits", "2", "--who", "bob", "--force",
                      "--reason", "canary alert is benign traffic")
    assert code == 0, err
    assert world.production("digits") == "2" and incident_id in err
    [entry] = [e for e in world.audit() if e.action == "registry.promoted"]
    assert entry.details["forced_over_incident"] == incident_id and entry.actor == "release:bob"
