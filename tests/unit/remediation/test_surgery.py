"""ONNX surgery: the right layer is found, pruned units are zero in the written file, the file is valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.remediation.adapters.onnx_surgery import SurgeryError, apply_masks, export, find_site, keep_masks
from services.remediation.adapters.tape_training import TapeModel
from services.scanner.adapters.onnx_model import open_model

pytestmark = pytest.mark.unit


def _params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_penultimate_dense_layer_is_the_site_of_an_mlp(planted: object) -> None:
    site = find_site(onnx.load(str(planted.model)))  # type: ignore[attr-defined]
    assert (site.kind, site.activation, site.units) == ("dense", "penultimate", 32)
    assert site.zero == (("W2", 0, 1), ("b2", 0, 1), ("W3", 1, 1))


def test_the_last_conv_is_the_site_of_a_cnn_and_its_flattened_inputs_are_spanned(cnn: tuple[Path, Path]) -> None:
    model = onnx.load(str(cnn[0]))
    site = find_site(model)
    assert (site.kind, site.activation, site.units) == ("conv", "r2", 8)
    assert site.zero == (("C2", 0, 1), ("cb2", 0, 1), ("W1", 0, 16))
    dense = find_site(model, "dense")
    assert dense.activation == "penultimate" and dense.zero == (("W1", 1, 1), ("b1", 0, 1), ("W2", 0, 1))


def test_pruned_channels_are_zero_in_the_written_file_which_is_valid_and_runs(cnn: tuple[Path, Path],
                                                                               tmp_path: Path) -> None:
    model = onnx.load(str(cnn[0]))
    site, params = find_site(model), _params(model)
    masks = keep_masks(params, site, [1, 6])
    export(model, apply_masks(params, masks), tmp_path / "p.onnx")
    out = onnx.load(str(tmp_path / "p.onnx"))
    onnx.checker.check_model(out, full_check=True)
    p = _params(out)
    assert not p["C2"][[1, 6]].any() and not p["cb2"][[1, 6]].any()
    assert not p["W1"][16:32].any() and not p["W1"][96:112].any() and p["W1"][:16].any()
    assert [i.name for i in out.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    x = np.load(cnn[1])["x"][:5]
    assert open_model(tmp_path / "p.onnx").predict(x).shape == (5, 10)
    act = TapeModel(out, "logits").unit_activation(x, site.activation)
    assert act[[1, 6]].tolist() == [0.0, 0.0] and act.sum() > 0


def test_a_graph_without_a_hidden_layer_cannot_be_pruned() -> None:
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "W")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    with pytest.raises(SurgeryError, match="no prunable layer"):
        find_site(helper.make_model(g))
