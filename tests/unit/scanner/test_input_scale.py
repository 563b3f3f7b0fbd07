"""A model that takes its inputs on another scale (0-255 pixels, standardised values) gets the same verdict.

Exports often fold the preprocessing into the graph (``(x - mean) / std`` or ``x / 255`` in front), and the
clean data then comes on the raw scale. Every detector reads the data's range and works in it, so the
scores must not move when the same model and data are put on another affine scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import ScanConfig, scan_model, scan_training_data

pytestmark = pytest.mark.unit

FULL = ScanConfig()  # the full search: a small MLP scans in about a second


def _with_preprocessing(path: Path, scale: float, shift: float, out: Path) -> Path:
    """``path`` with ``(raw - shift) / scale`` in front of its input: it takes ``x * scale + shift``."""
    model = onnx.load(path)
    graph = model.graph
    first = graph.input[0]
    raw = helper.make_tensor_value_info("raw", first.type.tensor_type.elem_type, None)
    raw.type.CopyFrom(first.type)
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "scale"),
                              numpy_helper.from_array(np.array(shift, np.float32), "shift")])
    nodes = [helper.make_node("Sub", ["raw", "shift"], ["raw_shifted"]),
             helper.make_node("Div", ["raw_shifted", "scale"], [first.name]), *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[0]
    graph.input.insert(0, raw)
    onnx.save(model, out)
    return out


@pytest.mark.parametrize(("scale", "shift"), [(255.0, 0.0), (4.0, -2.0)])
def test_the_verdict_does_not_depend_on_the_input_scale(zoo: Any, tmp_path: Path, scale: float, shift: float) -> None:
    model = open_model(zoo.backdoored_model)
    clean = load_npz(zoo.clean_npz, model.input_shape)
    before = scan_model(model, clean, FULL)
    moved = open_model(_with_preprocessing(zoo.backdoored_model, scale, shift, tmp_path / "scaled.onnx"))
    after = scan_model(moved, Dataset((clean.x * scale + shift).astype(np.float32), clean.y), FULL)
    assert before.backdoor_detected and after.backdoor_detected and after.target_classes == before.target_classes
    scores = {r.key: r.score for r in before.results}
    assert {r.key: r.score for r in after.results} == pytest.approx(scores, rel=0.02, abs=0.05)


def test_scan_data_quarantines_the_same_samples_on_another_scale(zoo: Any, tmp_path: Path) -> None:
    model = open_model(zoo.backdoored_model)
    train = load_npz(zoo.train_npz, model.input_shape)
    before = scan_training_data(model, train, FULL)
    moved = open_model(_with_preprocessing(zoo.backdoored_model, 255.0, 0.0, tmp_path / "scaled.onnx"))
    after = scan_training_data(moved, Dataset((train.x * 255.0).astype(np.float32), train.y), FULL)
    found, again = set(before.suspicious_indices), set(after.suspicious_indices)
    assert len(found & set(zoo.poison_idx.tolist())) > 0.8 * len(zoo.poison_idx)
    assert len(found ^ again) <= 0.02 * len(found)
