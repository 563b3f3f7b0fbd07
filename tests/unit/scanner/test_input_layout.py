"""A channels-last image input is named in the verdict instead of being scanned silently in the wrong plane."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_model import OnnxModel
from services.scanner.domain.input_layout import layout_note, looks_channels_last
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import ScanConfig, scan_model

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("shape", "last"), [((32, 32, 3), True), ((28, 28, 1), True), ((16, 16, 4), True),
                                             ((3, 32, 32), False), ((1, 28, 28), False), ((64,), False),
                                             ((3, 3, 3), False), ((2, 5, 3), False), ((8, 8, 8), False)])
def test_channels_last_is_told_by_where_the_channel_sized_axis_is(shape: tuple[int, ...], last: bool) -> None:
    assert looks_channels_last(shape) is last
    assert (layout_note(shape) is not None) is last


def test_a_scan_of_a_channels_last_model_says_so_in_the_verdict() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6 * 6 * 3, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])], "hwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    handle = OnnxModel(model)
    x = rng.random((120, 6, 6, 3)).astype(np.float32)
    data = Dataset(x, np.argmax(handle.predict(x), axis=1).astype(np.int64))
    verdict = scan_model(handle, data, ScanConfig(params={"neural_cleanse.v2": {"steps": 20}, "mmbd.v2": {"steps": 5}}))
    assert any("channels-last" in n and "[6, 6, 3]" in n for n in verdict.notes)
    assert "channels-last" in " ".join(verdict.to_dict()["notes"])
