from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
import typer
from typer.testing import CliRunner

from .conftest import TRUSTED_URL, onnx_model, sha256, sign

pytestmark = pytest.mark.unit


@pytest.fixture
def artifacts(tmp_path: Path, keys: dict[str, tuple[Path, Path]], provenance: dict[str, Any]) -> dict[str, Path]:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    prov = tmp_path / "prov.json"
    prov.write_text(json.dumps(provenance))
    return {
        "model": model,
        "signature": sign(model, tmp_path / "model.sig", keys["good"][0]),
        "key": keys["good"][1],
        "provenance": prov,
    }


def args(a: dict[str, Path], *extra: str) -> list[str]:
    return [
        "verify", str(a["model"]), "--source-url", TRUSTED_URL, "--provenance", str(a["provenance"]),
        "--digest", sha256(a["model"]), "--signature", str(a["signature"]), "--public-key", str(a["key"]),
        "--model", "resnet", "--version", "3", *extra,
    ]  # fmt: skip


def test_verify_approves_a_clean_signed_model_exits_zero_and_writes_the_report(
    app: typer.Typer, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    result = CliRunner().invoke(app, args(artifacts, "--report", str(report)))
    assert result.exit_code == 0, result.output
    assert "APPROVED" in result.output and "signature" in result.output
    written = json.loads(report.read_text())
    assert written["approved"] is True and written["model"] == "resnet" and written["version"] == "3"
    assert {c["name"] for c in written["checks"]} >= {"source", "integrity", "signature", "runtime_load"}


def test_verify_rejects_a_lookalike_source_and_exits_one(app: typer.Typer, artifacts: dict[str, Path]) -> None:
    argv = args(artifacts)
    argv[argv.index(TRUSTED_URL)] = "https://huggingface.co.evil.io/models/acme/resnet"
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert "REJECTED" in result.output and "embeds trusted name" in result.output


def test_verify_rejects_a_pickle_disguised_as_onnx_and_exits_one(
    app: typer.Typer, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    disguised = tmp_path / "evil.onnx"
    disguised.write_bytes(b"cposix\nsystem\n(S'id'\ntR.")
    argv = args(artifacts, "--allow-pickle")
    argv[1] = str(disguised)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1 and "posix.system" in result.output


@pytest.mark.parametrize("problem", ["missing-artifact", "missing-key", "bad-provenance", "no-source"])
def test_verify_exits_two_on_usage_and_io_errors(
    app: typer.Typer, artifacts: dict[str, Path], tmp_path: Path, problem: str
) -> None:
    argv = args(artifacts)
    if problem == "missing-artifact":
        argv[1] = str(tmp_path / "absent.onnx")
    elif problem == "missing-key":
        argv[argv.index(str(artifacts["key"]))] = str(tmp_path / "absent.pem")
    elif problem == "bad-provenance":
        artifacts["provenance"].write_text("{not json")
    else:
        argv = ["verify", str(artifacts["model"])]
    assert CliRunner().invoke(app, argv).exit_code == 2
