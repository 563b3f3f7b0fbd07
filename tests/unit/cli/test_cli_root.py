"""The root ``bdguard`` command: a store that is not set up, an unreadable file or any unanticipated error
ends in one ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services import cli

pytestmark = pytest.mark.unit


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["bdguard", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return int(exit_.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("argv", [["ledger", "list"], ["audit", "verify"], ["incident", "list"],
                                  ["registry", "view"], ["registry", "promote", "m", "1"]])
def test_a_store_without_tables_says_to_run_db_upgrade(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       argv: list[str]) -> None:
    monkeypatch.setenv("BDGUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code, err = _main(monkeypatch, capsys, *argv)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error:") and "bdguard db upgrade" in err and len(err.strip().splitlines()) == 1


def test_an_unparsable_database_url_is_named(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BDGUARD_DATABASE_URL", "not a url")
    code, err = _main(monkeypatch, capsys, "ledger", "list")
    assert code == 2 and "BDGUARD_DATABASE_URL" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"])
def test_registry_publish_refuses_an_unreadable_provenance_before_sending(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          tmp_path: Path, content: str | None) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing may be sent: no broker needed
    artifact, prov = tmp_path / "m.onnx", tmp_path / "prov.json"
    artifact.write_bytes(b"model")
    if content is not None:
        prov.write_text(content)
    code, err = _main(monkeypatch, capsys, "registry", "publish", str(artifact), "--model", "m", "--version", "1",
                      "--source-url", "https://example.org/m", "--provenance", str(prov))
    assert code == 2 and "prov.json" in err and "Traceback" not in err


def test_python_dash_m_runs_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "services.cli", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3], timeout=120)
    assert out.returncode == 0 and "scan" in out.stdout


@pytest.mark.parametrize("option", ["--signature", "--clean-data"])
def test_registry_publish_refuses_a_missing_signature_or_clean_data_before_sending(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing may be sent: no broker needed
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"model")
    code, err = _main(monkeypatch, capsys, "registry", "publish", str(artifact), "--model", "m", "--version", "1",
                      "--source-url", "https://example.org/m", option, str(tmp_path / "missing.bin"))
    assert code == 2 and "missing.bin" in err and "does not exist" in err
