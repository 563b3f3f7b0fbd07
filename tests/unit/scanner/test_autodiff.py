"""The numpy ONNX interpreter matches onnxruntime and finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_autodiff import GraphTape, UnsupportedGraph
from services.scanner.adapters.onnx_model import OnnxModel

pytestmark = pytest.mark.unit


def _graph(nodes: list[Any], params: dict[str, Any], in_shape: list[int], out: str = "y") -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _cnn_every_op() -> onnx.ModelProto:
    r = np.random.default_rng(0)
    p = {"W": r.normal(size=(4, 2, 3, 3)), "B": r.normal(size=4), "s": r.uniform(0.5, 2, 4), "bb": r.normal(size=4),
         "mu": r.normal(size=4), "var": r.uniform(0.5, 2, 4), "W2": r.normal(size=(4, 1, 3, 3)),
         "L": r.normal(size=(40, 3)), "c": r.normal(size=3), "k": np.array([0.5])}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["b1"]),
             helper.make_node("LeakyRelu", ["b1"], ["r1"], alpha=0.1),
             helper.make_node("Conv", ["r1", "W2"], ["c2"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c2"], ["m1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["r1"], ["a1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["m1", "a1"], ["cat"], axis=1),
             helper.make_node("Sigmoid", ["cat"], ["sg"]),
             helper.make_node("Mul", ["sg", "k"], ["mk"]),
             helper.make_node("GlobalAveragePool", ["cat"], ["gp"]),
             helper.make_node("Flatten", ["sg"], ["f1"]),
             helper.make_node("Flatten", ["gp"], ["f2"]),
             helper.make_node("Tanh", ["f2"], ["t2"]),
             helper.make_node("Concat", ["f1", "t2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "L", "c"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    p["L"] = r.normal(size=(8 * 2 * 2 + 8, 3))
    return _graph(nodes, p, [2, 4, 4])


def test_interpreter_forward_matches_onnxruntime_on_a_graph_using_many_ops() -> None:
    model = OnnxModel(_cnn_every_op())
    x = np.random.default_rng(1).random((5, 2, 4, 4)).astype(np.float32)
    assert model.exact_gradients and model.outputs_probabilities
    z, _ = model.value_and_grad(x, lambda z: np.zeros_like(z))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), model.predict(x), atol=1e-5)


def test_input_gradients_match_central_finite_differences_in_float64() -> None:
    tape = GraphTape(_cnn_every_op())
    tape.params = {k: v.astype(np.float64) for k, v in tape.params.items()}
    x = np.random.default_rng(2).random((2, 2, 4, 4))
    c = np.random.default_rng(3).normal(size=(2, 3))
    grad = tape.backward(tape.forward(x), c)[tape.input]

    def f(xx: Any) -> float:
        return float((tape.forward(xx)[tape.output] * c).sum())

    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = 1e-6
        num[idx] = (f(x + d) - f(x - d)) / 2e-6
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-6)


def test_unknown_ops_are_refused_so_the_caller_can_fall_back() -> None:
    m = _graph([helper.make_node("Hardmax", ["x"], ["y"])], {}, [3])
    with pytest.raises(UnsupportedGraph, match="Hardmax"):
        GraphTape(m)


def test_gradient_free_fallback_points_the_same_way_as_the_exact_gradient() -> None:
    r = np.random.default_rng(4)
    p = {"W": r.normal(size=(6, 3)), "b": r.normal(size=3)}
    exact = OnnxModel(_graph([helper.make_node("Gemm", ["x", "W", "b"], ["h"]),
                              helper.make_node("Tanh", ["h"], ["y"])], p, [6]))
    fallback = OnnxModel(_graph([helper.make_node("Gemm", ["x", "W", "b"], ["h"]),
                                 helper.make_node("Hardmax", ["h"], ["e"]),
                                 helper.make_node("Sub", ["e", "e"], ["zero"]),
                                 helper.make_node("Tanh", ["h"], ["t"]),
                                 helper.make_node("Add", ["t", "zero"], ["y"])], p, [6]), nes_samples=400)
    assert exact.exact_gradients and not fallback.exact_gradients
    x = r.random((4, 6)).astype(np.float32)
    c = r.normal(size=(4, 3)).astype(np.float32)
    g1 = exact.value_and_grad(x, lambda z: c)[1].ravel()
    g2 = fallback.value_and_grad(x, lambda z: c)[1].ravel()
    assert float(g1 @ g2 / (np.linalg.norm(g1) * np.linalg.norm(g2))) > 0.9
