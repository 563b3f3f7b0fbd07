"""Colour (multi-channel) image models: one mask over H x W shared by the channels, a pattern per channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.reports import report_dict, write_html
from services.scanner.service_layer.scan import ScanConfig, scan_model_file

pytestmark = pytest.mark.unit
C, SIDE, K = 3, 8, 4


def _colour_model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = {"W": rng.normal(0, 0.5, (6, C, 3, 3)).astype(np.float32), "b": np.zeros(6, np.float32),
         "G": rng.normal(0, 0.5, (K, 6)).astype(np.float32), "g": np.zeros(K, np.float32)}
    nodes = [helper.make_node("Conv", ["input", "W", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "g"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "colour", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["N", C, SIDE, SIDE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
                              [numpy_helper.from_array(v, n) for n, v in p.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_colour_model_is_scanned_with_channel_shared_masks_and_per_channel_patterns(tmp_path: Path) -> None:
    model = _colour_model(tmp_path / "colour.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "clean.npz", x=rng.uniform(0, 1, (60, C, SIDE, SIDE)).astype(np.float32),
             y=rng.integers(0, K, 60))
    config = ScanConfig(params={"neural_cleanse.v2": {"steps": 20, "max_samples": 40},
                                "mmbd.v2": {"steps": 10, "starts": 2}})
    verdict = scan_model_file(model, tmp_path / "clean.npz", config)
    nc = next(r for r in verdict.results if r.key == "neural_cleanse.v2")
    assert len(nc.evidence["l1_norms"]) == K and all(np.isfinite(v) and v > 0 for v in nc.evidence["l1_norms"])
    report = report_dict(verdict, {"model": str(model)})
    write_html(report, tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text().count("<") > 10
    for mask, pattern in nc.triggers.values():
        assert mask.shape == (SIDE, SIDE) and pattern.shape == (C, SIDE, SIDE)


def test_a_binary_classifier_is_scored_on_the_two_class_scale_and_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "b"], ["logits"], transB=1)], "binary",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(rng.normal(0, 1, (2, 6)).astype(np.float32), "W"),
         numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "binary.onnx")
    np.savez(tmp_path / "clean.npz", x=rng.uniform(0, 1, (40, 6)).astype(np.float32), y=rng.integers(0, 2, 40))
    config = ScanConfig(params={"neural_cleanse.v2": {"steps": 20, "max_samples": 40},
                                "mmbd.v2": {"steps": 10, "starts": 2}})
    verdict = scan_model_file(tmp_path / "binary.onnx", tmp_path / "clean.npz", config)
    notes = {r.key: r.evidence.get("note", "") for r in verdict.results if r.key in ("neural_cleanse.v2", "mmbd.v2")}
    assert set(notes) == {"neural_cleanse.v2", "mmbd.v2"} and all(n.startswith("two classes") for n in notes.values())
    for r in (r for r in verdict.results if r.key in notes):  # each class scored against the other: opposite
        scores = r.evidence["class_scores"]
        assert len(scores) == 2 and scores[0] == pytest.approx(-scores[1], abs=1e-3)
