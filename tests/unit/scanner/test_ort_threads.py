"""A costly model's sessions run on every core, a small one's on one; the results are the same either way."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters import ort_options
from services.scanner.adapters.onnx_model import OnnxModel
from services.scanner.adapters.ort_options import MAX_THREADS, PARALLEL_MACS, THREADS_ENV, scan_threads

pytestmark = pytest.mark.unit


def _wide_conv_net(channels: int, side: int) -> onnx.ModelProto:
    """Two 3x3 convolutions of ``channels`` channels on [3, side, side], a MaxPool, global pooling, 4 logits."""
    r = np.random.default_rng(0)
    p = {"W1": r.normal(0, 0.3, (channels, 3, 3, 3)), "B1": r.normal(0, 0.1, channels),
         "W2": r.normal(0, 0.05, (channels, channels, 3, 3)), "W": r.normal(0, 0.3, (4, channels)),
         "b": np.zeros(4)}
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2"], ["c2"], pads=[1] * 4),
             helper.make_node("MaxPool", ["c2"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["m"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in p.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_small_models_run_on_one_thread_and_costly_ones_on_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(ort_options, "_cores", lambda: 6)
    assert scan_threads(None) == 1
    assert scan_threads(PARALLEL_MACS / 2) == 1
    assert scan_threads(PARALLEL_MACS) == 6
    monkeypatch.setattr(ort_options, "_cores", lambda: 64)
    assert scan_threads(PARALLEL_MACS) == MAX_THREADS  # every session keeps a pool of its own
    monkeypatch.setenv(THREADS_ENV, "3")
    assert scan_threads(1e3) == 3 and scan_threads(1e12) == 3
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=THREADS_ENV):
        scan_threads(1e12)


def test_a_model_scanned_on_two_threads_gives_the_same_outputs_and_gradients_as_on_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = _wide_conv_net(channels=48, side=24)
    x = np.random.default_rng(1).random((6, 3, 24, 24)).astype(np.float32)
    got = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(THREADS_ENV, threads)
        handle = OnnxModel(model)
        assert handle.threads == int(threads) and handle.exact_gradients
        z, g = handle.value_and_grad(x, lambda z: (np.ones_like(z) / len(z)).astype(np.float32))
        got[threads] = (handle.predict(x), z, g)
    for one, two in zip(got["1"], got["2"], strict=True):
        np.testing.assert_array_equal(one, two)
