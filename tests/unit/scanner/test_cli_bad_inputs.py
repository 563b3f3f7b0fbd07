"""Bad input to ``scan`` and ``scan-data`` gets one line naming the file and the problem, exit 2, no traceback,
and is refused before the scan runs (a long scan is never thrown away for a report path)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from services.scanner.entrypoints import cli

pytestmark = pytest.mark.unit
FAST = "--detectors=neural_cleanse"


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], out: str,
          inits: list[onnx.TensorProto]) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", None])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _mlp(path: Path, classes: int = 3, softmax: bool = True) -> Path:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, classes)).astype(np.float32), "W"),
             numpy_helper.from_array(np.zeros(classes, np.float32), "b")]
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["p"], axis=1))
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                 "p" if softmax else "z", inits)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 4)).astype(np.float32), np.arange(60) % 3
    f = {"model": _mlp(d / "m.onnx"), "one_softmax": _mlp(d / "one.onnx", classes=1)}
    w = numpy_helper.from_array(rng.normal(size=(2, 1, 3, 3)).astype(np.float32), "Wc")
    wd = numpy_helper.from_array(rng.normal(size=(72, 3)).astype(np.float32), "Wd")
    f["conv"] = _save(d / "conv.onnx", [helper.make_node("Conv", ["x", "Wc"], ["c"]),
                                        helper.make_node("Flatten", ["c"], ["f"]),
                                        helper.make_node("MatMul", ["f", "Wd"], ["o"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])], "o", [w, wd])
    f["int_input"] = _save(d / "int.onnx", [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
                                            helper.make_node("Gemm", ["xf", "W", "b"], ["z"])],
                           [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 4])], "z",
                           [numpy_helper.from_array(np.ones((4, 3), np.float32), "W"),
                            numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    arrays: dict[str, dict[str, Any]] = {
        "clean": {"x": x, "y": y}, "no_y": {"x": x}, "one_sample": {"x": x[0], "y": y[:1]},
        "wide": {"x": rng.normal(size=(60, 5)).astype(np.float32), "y": y},
        "img_last": {"x": rng.uniform(size=(30, 8, 8, 1)).astype(np.float32), "y": np.arange(30) % 3},
        "binary": {"x": x, "y": np.arange(60) % 2}, "img_one": {"x": np.zeros((1, 8, 8), np.float32), "y": y[:1]}}
    for name, arr in arrays.items():
        np.savez(d / f"{name}.npz", **arr)
        f[name] = d / f"{name}.npz"
    f["text"] = d / "text.npz"
    f["text"].write_text("x,y\n1,2\n")
    f["bad_baseline"] = d / "base.json"
    f["bad_baseline"].write_text('{"detectors": [{"key": "neural_cleanse.v2", "evidence": {"l1_norms": ["a"]}}]}')
    f["five_classes"] = d / "five.json"  # a report of another model: 5 classes, where m.onnx has 3
    f["five_classes"].write_text(json.dumps({"detectors": [{"key": "neural_cleanse.v2",
                                                            "evidence": {"l1_norms": [1.0, 2.0, 3.0, 4.0, 5.0]}}]}))
    f["npy"] = d / "x.npy"
    np.save(f["npy"], x)
    f["dir"] = d / "dir.npz"
    f["dir"].mkdir()
    f["bomb"] = d / "bomb.npz"  # 256 MiB of zeros in ~250 KiB: refused before np.load inflates it
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 26,)})
    with zipfile.ZipFile(f["bomb"], "w", zipfile.ZIP_DEFLATED) as z, z.open("x.npy", "w", force_zip64=True) as m:
        m.write(header.getvalue())
        for _ in range(16):
            m.write(bytes(1 << 24))
    f["huge"] = d / "huge.npz"  # x.npy declares 5 GiB of float32 in a few bytes: refused before numpy allocates it
    _declared_only(f["huge"], {"x": (5 << 28, 4), "y": (5 << 28,)}, "<f4")
    return f


def _declared_only(path: Path, shapes: dict[str, tuple[int, ...]], descr: str) -> None:
    """An uncompressed .npz whose members carry only their .npy headers (the shapes they declare)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, shape in shapes.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
            z.writestr(f"{name}.npy", header.getvalue() + bytes(64))


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    cli.register(a)
    return a


def _run(app: typer.Typer, files: dict[str, Path], argv: list[str]) -> Any:
    return CliRunner().invoke(app, [a.format(**{k: str(v) for k, v in files.items()}) for a in argv],
                              env={"CI": "true"})


@pytest.mark.parametrize(("argv", "needles"), [
    (["scan", "{dir}", "--clean-data", "{clean}"], ["dir.npz", "is a directory"]),
    (["scan", "{model}", "--clean-data", "{dir}"], ["dir.npz", "is a directory"]),
    (["scan", "{model}", "--clean-data", "{text}"], ["text.npz", "not an .npz archive"]),
    (["scan", "{model}", "--clean-data", "{model}"], ["m.onnx", "not an .npz archive"]),
    (["scan", "{model}", "--clean-data", "{npy}"], ["x.npy", "a single .npy array"]),
    (["scan", "{model}", "--clean-data", "{no_y}"], ["no_y.npz", "lacks array(s) ['y']"]),
    (["scan", "{model}", "--clean-data", "{one_sample}"], ["one_sample.npz", "batch"]),
    (["scan", "{model}", "--clean-data", "{wide}"], ["wide.npz", "m.onnx", "(5,)", "(4,)"]),
    (["scan", "{conv}", "--clean-data", "{img_last}"], ["img_last.npz", "conv.onnx", "channels-last"]),
    (["scan", "{conv}", "--clean-data", "{img_one}"], ["img_one.npz", "conv.onnx", "batch dim"]),
    (["scan", "{int_input}", "--clean-data", "{clean}"], ["int.onnx", "one float input"]),
    (["scan", "{model}", "--clean-data", "{clean}", "--output", "nope"], ["m.onnx", "'nope'"]),
    (["scan", "{model}", "--clean-data", "{bomb}"], ["bomb.npz", "compression ratio"]),
    (["scan", "{model}", "--clean-data", "{huge}"], ["huge.npz", "x ", "20.0 GiB", "BDGUARD_SCANNER_MAX_ARRAY_BYTES"]),
    (["scan-data", "{model}", "--data", "{huge}"], ["huge.npz", "20.0 GiB", "BDGUARD_SCANNER_MAX_ARRAY_BYTES"]),
    (["scan", "{one_softmax}", "--clean-data", "{binary}", FAST], ["one.onnx", "same output"]),
    (["scan", "{model}", "--clean-data", "{clean}", "--baseline", "{bad_baseline}"],
     ["base.json", "not a scan report"]),
    (["scan", "{model}", "--clean-data", "{clean}", "--baseline", "{five_classes}", FAST],
     ["--baseline", "five.json", "5 classes", "m.onnx has 3"]),
    (["scan", "{model}", "--clean-data", "{clean}", "--baseline", "{five_classes}", "--detectors=mmbd"],
     ["--baseline", "five.json", "neural_cleanse", "--detectors"]),
    (["scan-data", "{model}", "--data", "{text}"], ["text.npz", "not an .npz archive"]),
    (["scan-data", "{model}", "--data", "{npy}"], ["x.npy", "a single .npy array"]),
    (["scan-data", "{model}", "--data", "{wide}"], ["wide.npz", "m.onnx"]),
])
def test_a_bad_file_gets_one_line_naming_it_and_exit_two(app: typer.Typer, files: dict[str, Path],
                                                         argv: list[str], needles: list[str]) -> None:
    res = _run(app, files, argv)
    assert res.exit_code == 2, res.output
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "internal error" not in res.stderr and "pickled" not in res.stderr, res.stderr
    assert all(n in error[0] for n in needles), error[0]


@pytest.mark.parametrize(("option", "target", "needle"), [
    ("--report", "missing/r.json", "does not exist"),
    ("--html", "missing/r.html", "does not exist"),
    ("--sarif", "{dir}", "is a directory"),
    ("--triggers", "missing/t.npz", "does not exist"),
])
def test_an_unwritable_output_is_refused_before_the_scan(app: typer.Typer, files: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, option: str, target: str,
                                                         needle: str) -> None:
    calls: list[object] = []
    monkeypatch.setattr(cli, "scan_model_file", lambda *a, **k: calls.append(a))
    path = target.format(dir=files["dir"]) if "{" in target else str(tmp_path / target)
    res = _run(app, files, ["scan", "{model}", "--clean-data", "{clean}", option, path])
    assert res.exit_code == 2 and not calls, res.output
    assert option in res.stderr and needle in res.stderr


@pytest.mark.parametrize("command", ["scan", "scan-data"])
@pytest.mark.parametrize("names", [",", "", " , ,"])
def test_detectors_naming_no_detector_are_refused_with_the_valid_keys(app: typer.Typer, files: dict[str, Path],
                                                                     command: str, names: str) -> None:
    data = "--clean-data" if command == "scan" else "--data"
    res = _run(app, files, [command, "{model}", data, "{clean}", "--detectors", names])
    assert res.exit_code == 2, res.output
    [error] = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    own, other = ("neural_cleanse.v2", "strip.v1") if command == "scan" else ("strip.v1", "neural_cleanse.v2")
    assert "--detectors" in error and own in error and other not in error, error


def test_the_cap_on_a_loaded_array_is_a_scanner_setting(app: typer.Typer, files: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, ["scan", str(files["model"]), "--clean-data", str(files["clean"]), FAST],
                             env={"CI": "true", "BDGUARD_SCANNER_MAX_ARRAY_BYTES": "512"})  # x is 960 bytes
    assert res.exit_code == 2, res.output
    [error] = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert "clean.npz" in error and "960 bytes" in error and "512 bytes" in error, error
    res = CliRunner().invoke(app, ["scan", str(files["model"]), "--clean-data", str(files["clean"]), FAST],
                             env={"CI": "true", "BDGUARD_SCANNER_MAX_ARRAY_BYTES": "lots"})
    assert res.exit_code == 2 and "internal error" not in res.stderr, res.output
    [error] = [line for line in res.stderr.splitlines() if line.strip()]
    assert error.startswith("error: BDGUARD_SCANNER_MAX_ARRAY_BYTES"), error


def test_a_baseline_of_another_class_count_is_refused_before_the_detectors_run(
        app: typer.Typer, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.scanner.service_layer import scan

    calls: list[object] = []
    monkeypatch.setattr(scan, "run_detectors", lambda *a, **k: calls.append(a))
    res = _run(app, files, ["scan", "{model}", "--clean-data", "{clean}", "--baseline", "{five_classes}", FAST])
    assert res.exit_code == 2 and not calls, res.output


def test_triggers_go_to_the_path_given_even_without_the_npz_suffix(tmp_path: Path) -> None:
    from services.scanner.adapters.reports import write_triggers
    from services.scanner.domain.detectors.base import DetectionResult
    from services.scanner.domain.policy import Verdict

    result = DetectionResult(key="neural_cleanse.v2", score=5.0, threshold=2.0, verdict="suspicious",
                             target_classes=[1], evidence={}, suspicious_indices=[],
                             seconds=0.0, triggers={1: (np.ones(4, np.float32), np.zeros(4, np.float32))})
    verdict = Verdict(backdoor_detected=True, confidence=0.9, target_classes=[1], block_deployment=True,
                      results=[result])
    assert write_triggers(verdict, tmp_path / "t.bin") == 1
    assert (tmp_path / "t.bin").is_file() and not (tmp_path / "t.bin.npz").exists()


def test_a_report_of_a_file_with_a_non_utf8_name_is_written(app: typer.Typer, files: dict[str, Path],
                                                           tmp_path: Path) -> None:
    odd = Path(tmp_path / b"m\xff.onnx".decode("utf-8", "surrogateescape"))
    odd.write_bytes(files["model"].read_bytes())
    res = CliRunner().invoke(app, ["scan", str(odd), "--clean-data", str(files["clean"]), FAST,
                                   "--report", str(tmp_path / "r.json")], env={"CI": "true"})
    assert res.exit_code in (0, 1), res.output
    assert json.loads((tmp_path / "r.json").read_text())["model"].endswith("m\\xff.onnx")
