"""``verify`` with awkward inputs: exit 1 (rejected) or 2 (usage), one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import typer
from typer.testing import CliRunner

from .conftest import TRUSTED_URL, onnx_model

pytestmark = pytest.mark.unit


def test_an_artifact_with_a_non_utf8_name_gets_its_report_written(app: typer.Typer, tmp_path: Path) -> None:
    odd = tmp_path / b"m\xff.onnx".decode("utf-8", "surrogateescape")
    onnx.save(onnx_model(), odd)
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["verify", str(odd), "--source-url", TRUSTED_URL, "--report", str(report)])
    assert res.exit_code == 1, res.output  # unsigned, no provenance: rejected, and the report says why
    assert json.loads(report.read_text())["artifact_uri"].endswith("m\\xff.onnx")


def test_a_report_into_a_missing_folder_is_refused_before_the_checks(app: typer.Typer, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(), model)
    res = CliRunner().invoke(app, ["verify", str(model), "--source-url", TRUSTED_URL,
                                   "--report", str(tmp_path / "missing" / "r.json")])
    assert res.exit_code == 2 and "does not exist" in res.output and "REJECTED" not in res.output
