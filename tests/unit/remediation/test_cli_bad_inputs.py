"""Bad input to ``remediate`` gets one line naming the file and the problem and exit 2 (never 1, which means
"below the bar", never a traceback), before the pruning and fine-tuning run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import typer
from typer.testing import CliRunner

from services.remediation.entrypoints import cli

pytestmark = pytest.mark.unit


def _invoke(*args: str) -> Any:
    app = typer.Typer()
    cli.register(app)

    @app.command("version")  # a second command keeps typer from collapsing the app into one command
    def version() -> None: ...

    return CliRunner().invoke(app, ["remediate", *args], env={"CI": "true"})


def _trigger(path: Path, **extra: Any) -> Path:
    np.savez(path, mask=np.zeros(64, np.float32), pattern=np.ones(64, np.float32), **extra)
    return path


@pytest.mark.parametrize(("case", "needles"), [
    ("target_too_large", ["t.npz", "target 10", "0..9"]),
    ("target_negative", ["t.npz", "target -1", "0..9"]),
    ("trigger_npy", ["t.npy", "a single .npy array"]),
    ("data_npy", ["d.npy", "a single .npy array"]),
    ("out_is_a_directory", ["outdir", "is a directory"]),
    ("report_is_a_directory", ["--report", "is a directory"]),
    ("output_without_shape", ["noshape.onnx", "ONNX checker"]),
])
def test_a_bad_input_exits_2_with_one_line_before_any_work(planted: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, case: str,
                                                          needles: list[str]) -> None:
    calls: list[object] = []
    if case not in ("data_npy", "output_without_shape"):  # those two the use case refuses as it opens its inputs
        monkeypatch.setattr(cli, "remediate_model", lambda *a, **k: calls.append(a))
    model, data, out, extra = str(planted.model), str(planted.clean_npz), str(tmp_path / "f.onnx"), []
    if case.startswith("target"):
        extra = ["--trigger", str(_trigger(tmp_path / "t.npz", target=np.int64(10 if "large" in case else -1)))]
    elif case == "trigger_npy":
        np.save(tmp_path / "t.npy", np.zeros(64, np.float32))
        extra = ["--trigger", str(tmp_path / "t.npy")]
    elif case == "data_npy":
        np.save(tmp_path / "d.npy", np.zeros((3, 64), np.float32))
        data = str(tmp_path / "d.npy")
    elif case == "out_is_a_directory":
        (tmp_path / "outdir").mkdir()
        out = str(tmp_path / "outdir")
    elif case == "report_is_a_directory":
        extra = ["--report", str(tmp_path)]
    else:  # valid for onnxruntime, but the remediated copy would fail onnx.checker at the very end
        m = onnx.load(str(planted.model))
        m.graph.output[0].type.tensor_type.ClearField("shape")
        onnx.save(m, tmp_path / "noshape.onnx")
        model = str(tmp_path / "noshape.onnx")
    res = _invoke(model, "--clean-data", data, "--out", out, *extra)
    assert res.exit_code == 2 and not calls, res.output
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and all(n in error[0] for n in needles), res.stderr


def test_an_unexpected_failure_exits_2_not_1_and_without_a_traceback(planted: Any, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "remediate_model", boom)
    res = _invoke(str(planted.model), "--clean-data", str(planted.clean_npz), "--out", str(tmp_path / "f.onnx"),
                  "--trigger", str(_trigger(tmp_path / "t.npz", target=np.int64(7))))
    assert res.exit_code == 2 and "internal error: RuntimeError: kaput" in res.stderr
    assert "Traceback" not in res.output
