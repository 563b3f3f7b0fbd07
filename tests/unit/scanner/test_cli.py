"""``scan`` and ``scan-data`` through Typer: exit codes, reports, errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from services.scanner.entrypoints.cli import register

from .conftest import ATTACK, BLEND, Zoo

pytestmark = pytest.mark.unit
FAST = "--detectors=neural_cleanse"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def test_register_adds_scan_and_scan_data(app: typer.Typer) -> None:
    names = {c.name for c in app.registered_commands}
    assert names == {"scan", "scan-data"}


def test_clean_model_exits_zero_with_a_report(app: typer.Typer, zoo: Zoo, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["scan", str(zoo.clean_model), "--clean-data", str(zoo.clean_npz),
                                   "--report", str(report), FAST], env={"CI": "true"})
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["backdoor_detected"] is False and data["target_classes"] == []
    assert 0 <= data["confidence"] < 0.5 and "neural_cleanse.v2" in data["timings"]


def test_backdoored_model_exits_one_and_writes_json_html_and_sarif(app: typer.Typer, zoo: Zoo, tmp_path: Path) -> None:
    r, h, s = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "r.sarif"
    res = CliRunner().invoke(app, ["scan", str(zoo.backdoored_model), "--clean-data", str(zoo.clean_npz),
                                   "--report", str(r), "--html", str(h), "--sarif", str(s), "--seed", "1"])
    assert res.exit_code == 1, res.output
    data = json.loads(r.read_text())
    assert data["backdoor_detected"] is True and data["target_classes"][0] == ATTACK.target
    assert f"target classes [{ATTACK.target}" in res.output and "agreement.v1" in res.output  # per-detector lines
    nc = next(d for d in data["detectors"] if d["key"] == "neural_cleanse.v2")
    png = base64.b64decode(nc["triggers_png_base64"][str(ATTACK.target)])
    assert png.startswith(b"\x89PNG")
    page = h.read_text()
    assert "data:image/png;base64," in page and "neural_cleanse.v2" in page
    sarif = json.loads(s.read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]


@pytest.mark.parametrize("args", [
    ["scan", "missing.onnx", "--clean-data", "missing.npz"],
    ["scan", "{model}", "--clean-data", "{junk}"],
    ["scan", "{model}", "--clean-data", "{clean}", "--detectors", "nope"],
    ["scan", "{model}", "--clean-data", "{clean}", "--output", "nope"],
    ["scan-data", "{model}", "--data", "{junk}"],
])
def test_bad_inputs_exit_two_with_a_message_on_stderr(app: typer.Typer, zoo: Zoo, tmp_path: Path,
                                                      args: list[str]) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    argv = [a.format(model=zoo.clean_model, junk=junk, clean=zoo.clean_npz) for a in args]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2
    assert "error:" in res.stderr


def test_scan_data_exits_one_and_lists_poisoned_samples(app: typer.Typer, zoo: Zoo, tmp_path: Path) -> None:
    report = tmp_path / "d.json"
    res = CliRunner().invoke(app, ["scan-data", str(zoo.blended_model), "--data", str(zoo.blend_train_npz),
                                   "--report", str(report)])
    assert res.exit_code == 1, res.output
    data = json.loads(report.read_text())
    found, truth = set(data["suspicious_indices"]), set(zoo.blend_idx.tolist())
    assert len(found & truth) >= 0.8 * len(truth) and len(found & truth) >= 0.8 * len(found)
    assert data["detectors"][0]["evidence"]["candidate_class"] == BLEND.target


def test_scan_data_on_clean_training_data_exits_zero(app: typer.Typer, zoo: Zoo, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["scan-data", str(zoo.clean_model), "--data", str(zoo.clean_train_npz)])
    assert res.exit_code == 0, res.output


def test_an_earlier_clean_report_can_serve_as_the_neural_cleanse_baseline(app: typer.Typer, zoo: Zoo,
                                                                          tmp_path: Path) -> None:
    base, report = tmp_path / "base.json", tmp_path / "r.json"
    runner = CliRunner()
    assert runner.invoke(app, ["scan", str(zoo.clean_model), "--clean-data", str(zoo.clean_npz), "--report",
                               str(base), FAST]).exit_code == 0
    res = runner.invoke(app, ["scan", str(zoo.backdoored_model), "--clean-data", str(zoo.clean_npz),
                              "--baseline", str(base), "--report", str(report), FAST])
    assert res.exit_code == 1, res.output
    detectors = {d["key"]: d for d in json.loads(report.read_text())["detectors"]}
    nc, joined = detectors["neural_cleanse.v2"], detectors["agreement.v1"]
    against_base = nc["evidence"]["baseline_class_scores"]
    assert nc["evidence"]["baseline_used"] is True and against_base.index(max(against_base)) == ATTACK.target
    assert joined["evidence"]["signals"] == [f"neural_cleanse.v2/{name}" for name in (
        "class_scores", "baseline_class_scores", "foreign_class_scores")]
    assert joined["verdict"] == "suspicious" and joined["target_classes"][0] == ATTACK.target
    assert runner.invoke(app, ["scan", str(zoo.clean_model), "--clean-data", str(zoo.clean_npz),
                               "--baseline", str(zoo.clean_npz), FAST]).exit_code == 2


def test_a_small_clean_set_is_named_on_the_terminal_and_in_the_reports(app: typer.Typer, zoo: Zoo,
                                                                      tmp_path: Path) -> None:
    with np.load(zoo.clean_npz) as npz:
        x, y = npz["x"], npz["y"]
    keep = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(10)])
    small, r, h = tmp_path / "small.npz", tmp_path / "r.json", tmp_path / "r.html"
    np.savez(small, x=x[keep], y=y[keep])
    res = CliRunner().invoke(app, ["scan", str(zoo.clean_model), "--clean-data", str(small), "--report", str(r),
                                   "--html", str(h), FAST], env={"CI": "true"})
    assert res.exit_code in (0, 1), res.output
    assert "note: only 5 clean inputs per class" in res.output
    assert json.loads(r.read_text())["notes"][0].startswith("only 5 clean inputs per class")
    assert "only 5 clean inputs per class" in h.read_text()


def _tiny(path: Path, nodes: list, input_dims: list, x: np.ndarray) -> tuple[Path, Path]:
    """A 4-class linear model on 16 values behind ``nodes`` (input ``x``, output ``y``), with clean data."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    np.savez(path.with_suffix(".npz"), x=x.astype(np.float32), y=rng.integers(0, 4, len(x)))
    return path, path.with_suffix(".npz")


def test_a_model_with_nan_outputs_is_an_error_not_a_clean_verdict(app: typer.Typer, tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Log", ["z"], ["y"])]  # log < 0
    model, data = _tiny(tmp_path / "nan.onnx", nodes, ["N", 16], np.random.default_rng(1).random((80, 16)))
    res = CliRunner().invoke(app, ["scan", str(model), "--clean-data", str(data)])
    assert res.exit_code == 2 and "NaN or infinite outputs" in res.output


def test_an_input_of_more_axes_is_scanned_and_drawn(app: typer.Typer, tmp_path: Path) -> None:
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    model, data = _tiny(tmp_path / "video.onnx", nodes, ["N", 1, 2, 2, 4],
                        np.random.default_rng(1).random((80, 1, 2, 2, 4)))
    res = CliRunner().invoke(app, ["scan", str(model), "--clean-data", str(data), "--html", str(tmp_path / "r.html"),
                                   FAST])
    assert res.exit_code in (0, 1), res.output
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()


def test_an_unexpected_failure_exits_two_never_one(app: typer.Typer, zoo: Zoo, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # exit 1 means "backdoor detected" to a CI gate: a crash must not read as a verdict
    import services.scanner.entrypoints.cli as cli

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "scan_model_file", broken)
    res = CliRunner().invoke(app, ["scan", str(zoo.clean_model), "--clean-data", str(zoo.clean_npz)])
    assert res.exit_code == 2 and "internal error: RuntimeError: disk on fire" in res.output
