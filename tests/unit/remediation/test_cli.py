"""``remediate`` command: exit 0 meets the bar, 1 does not (file still written), 2 on errors; JSON report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from services.remediation.entrypoints import cli

pytestmark = pytest.mark.unit


def _app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)

    @app.command("version")  # a second command keeps typer from collapsing the app into one command
    def version() -> None: ...

    return app


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(_app(), ["remediate", *args])


def test_a_remediation_that_meets_the_bar_exits_0_and_writes_the_report(planted: Any, tmp_path: Path) -> None:
    res = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "f.onnx"),
                  "--trigger", str(planted.trigger_npz), "--report", str(tmp_path / "r.json"),
                  "--max-accuracy-drop", "0.02", "--seed", "2")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["meets_bar"] and rep["asr_after"] < 0.1 and rep["asr_before"] > 0.9
    assert {"tensor", "indices", "units"} <= set(rep["pruned"]) and rep["parent_sha256"]
    assert {"clean_accuracy_before", "clean_accuracy_after", "timings", "n_holdout"} <= set(rep)
    assert "meets the bar" in res.output


def test_a_remediation_below_the_bar_exits_1_and_still_writes_the_model(planted: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli.remediate_model
    monkeypatch.setattr(cli, "remediate_model", lambda *a, **k: dataclasses.replace(real(*a, **k), asr_after=0.5))
    res = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "f.onnx"),
                  "--trigger", str(planted.trigger_npz))
    assert res.exit_code == 1 and (tmp_path / "f.onnx").is_file()
    assert "NOT meet" in res.output


@pytest.mark.parametrize("case", ["missing_model", "bad_npz", "bad_trigger", "bad_budget"])
def test_errors_exit_2_with_a_clear_message(planted: Any, tmp_path: Path, case: str) -> None:
    model, data, extra = str(planted.model), str(planted.clean_npz), []
    if case == "missing_model":
        model = str(tmp_path / "missing.onnx")
    elif case == "bad_npz":
        np.savez(tmp_path / "d.npz", x=np.zeros((3, 64), np.float32))
        data = str(tmp_path / "d.npz")
    elif case == "bad_trigger":
        np.savez(tmp_path / "t.npz", mask=np.ones(3, np.float32))
        extra = ["--trigger", str(tmp_path / "t.npz")]
    else:
        extra = ["--max-accuracy-drop", "2"]
    res = _invoke(model, "--clean-data", data, "--out", str(tmp_path / "f.onnx"), *extra)
    assert res.exit_code == 2
    assert "error:" in res.output and not (tmp_path / "f.onnx").exists()


def test_without_a_trigger_the_bar_cannot_be_confirmed_so_it_exits_1(planted: Any, tmp_path: Path) -> None:
    res = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "f.onnx"),
                  "--report", str(tmp_path / "r.json"))
    assert res.exit_code == 1 and (tmp_path / "f.onnx").is_file()
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["asr_checked"] is False and rep["asr_after"] is None and rep["pruned"]["order"] == "dormant"
    assert "not measured" in res.output


def test_reverse_finds_the_trigger_itself_and_reports_the_rounds_as_one(planted: Any, tmp_path: Path) -> None:
    res = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "f.onnx"),
                  "--reverse", "--report", str(tmp_path / "r.json"))
    assert res.exit_code in (0, 1), res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["trigger_source"] == "reversed" and rep["target"] == 7  # the planted patch's class
    assert rep["output"] == str(tmp_path / "f.onnx") and (tmp_path / "f.onnx").is_file()
    assert rep["model"] == str(planted.model) and rep["timings"]["rounds"] == 2
    assert rep["asr_before"] > 0.5 > rep["asr_after"]
    assert (res.exit_code == 0) == rep["meets_bar"]
    both = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "g.onnx"),
                   "--reverse", "--trigger", str(planted.trigger_npz))
    assert both.exit_code == 2 and "not both" in both.output
