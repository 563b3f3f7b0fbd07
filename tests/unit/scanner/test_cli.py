"""``scan`` and ``scan-data`` through Typer: exit codes, reports, errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import typer
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
