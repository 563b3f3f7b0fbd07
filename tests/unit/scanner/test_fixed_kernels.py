"""Convolutions with fixed weights run on onnxruntime and give the numpy tape's input gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_autodiff import GraphTape
from services.scanner.adapters.onnx_model import OnnxModel

pytestmark = pytest.mark.unit

CASES: list[tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]] = [
    ("same size", {"pads": [1, 1, 1, 1]}, (3, 9, 9), (4, 3, 3, 3)),
    ("stride 2, even input", {"pads": [1, 1, 1, 1], "strides": [2, 2]}, (3, 8, 8), (4, 3, 3, 3)),
    ("stride 3 leaves rows unused", {"pads": [1, 0, 2, 1], "strides": [3, 2]}, (2, 11, 10), (4, 2, 3, 3)),
    ("dilation", {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, (2, 9, 9), (3, 2, 3, 3)),
    ("groups", {"pads": [1, 1, 1, 1], "group": 2}, (4, 7, 7), (6, 2, 3, 3)),
    ("auto_pad SAME_UPPER, stride 2", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (2, 9, 9), (3, 2, 4, 4)),
    ("auto_pad VALID, no bias", {"auto_pad": "VALID"}, (2, 6, 7), (3, 2, 2, 3)),
    ("1-D, stride 2", {"pads": [1, 1], "strides": [2]}, (3, 13), (5, 3, 3)),
]


def _conv_net(attrs: dict[str, Any], in_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> onnx.ModelProto:
    r = np.random.default_rng(0)
    bias = "VALID" not in str(attrs.get("auto_pad", ""))
    params = {"W": r.normal(size=w_shape), **({"B": r.normal(size=w_shape[0])} if bias else {})}
    nodes = [helper.make_node("Conv", ["x", *params], ["c"], **attrs),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
             helper.make_node("Concat", ["s", "s"], ["y0"], axis=1),
             helper.make_node("Mul", ["y0", "k"], ["y"])]
    params["k"] = np.array([1.0, -0.5])
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
                          + [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize(("attrs", "in_shape", "w_shape"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fixed_weight_convolutions_give_the_numpy_tapes_output_and_input_gradient(
        attrs: dict[str, Any], in_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> None:
    model = _conv_net(attrs, in_shape, w_shape)
    plain, fixed = GraphTape(model), GraphTape(model, fixed_weights=True)
    assert list(fixed.kernels) == [0]  # the Conv node runs on onnxruntime
    x = np.random.default_rng(1).random((4, *in_shape)).astype(np.float32)
    c = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)
    env_p, env_f = plain.forward(x), fixed.forward(x)
    np.testing.assert_allclose(env_f["y"], env_p["y"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(env_f["c"], env_p["c"], rtol=1e-5, atol=1e-5)
    grad_p = plain.backward(env_p, c)
    grad_f = fixed.backward(env_p, c)  # the same activations: only the convolution's rule differs
    assert grad_f["x"].shape == x.shape
    np.testing.assert_allclose(grad_f["x"], grad_p["x"], rtol=1e-5, atol=1e-5)
    assert "W" in grad_p and "W" not in grad_f  # no weight gradient is computed


def test_a_tape_with_fixed_weights_refuses_other_parameters() -> None:
    model = _conv_net(*CASES[0][1:])
    tape = GraphTape(model, fixed_weights=True)
    with pytest.raises(ValueError, match="fixed weights"):
        tape.forward(np.zeros((1, 3, 9, 9), np.float32), {k: v * 2 for k, v in tape.params.items()})


def test_a_convolution_whose_weight_is_computed_in_the_graph_stays_on_numpy() -> None:
    model = _conv_net(*CASES[0][1:])
    g = model.graph
    w = next(t for t in g.initializer if t.name == "W")
    w.name = "W_half"
    g.node.insert(0, helper.make_node("Mul", ["W_half", "two"], ["W"]))
    g.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    tape = GraphTape(model, fixed_weights=True)
    assert tape.kernels == {}
    x = np.random.default_rng(1).random((2, 3, 9, 9)).astype(np.float32)
    plain = GraphTape(model)
    np.testing.assert_allclose(tape.forward(x)["y"], plain.forward(x)["y"], rtol=1e-6)


def test_the_scanner_model_handle_uses_the_onnxruntime_convolutions() -> None:
    handle = OnnxModel(_conv_net(*CASES[1][1:]))
    assert handle.exact_gradients and handle.tape is not None and handle.tape.kernels
    x = np.random.default_rng(3).random((3, 3, 8, 8)).astype(np.float32)
    _z, gx = handle.value_and_grad(x, lambda z: np.ones_like(z))
    plain = GraphTape(handle.model)
    want = plain.backward(plain.forward(x), np.ones((3, 2), np.float32))["x"]
    np.testing.assert_allclose(gx, want, rtol=1e-4, atol=1e-5)


def test_inference_batch_normalization_runs_as_one_affine_map_with_the_tapes_gradient() -> None:
    r = np.random.default_rng(4)
    params = {"W": r.normal(size=(4, 2, 3, 3)), "s": r.uniform(0.5, 2, 4), "b": r.normal(size=4),
              "m": r.normal(size=4), "v": r.uniform(0.5, 2, 4), "L": r.normal(size=(4, 2))}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Add", ["r", "c"], ["res"]),  # a residual connection around the normalisation
             helper.make_node("GlobalAveragePool", ["res"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "L"], ["y"])]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    plain, fixed = GraphTape(model), GraphTape(model, fixed_weights=True)
    assert sorted(fixed.kernels) == [0, 1]
    x = np.random.default_rng(5).normal(size=(3, 2, 6, 6)).astype(np.float32)
    c = np.random.default_rng(6).normal(size=(3, 2)).astype(np.float32)
    env_p, env_f = plain.forward(x), fixed.forward(x)
    np.testing.assert_allclose(env_f["n"], env_p["n"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fixed.backward(env_p, c)["x"], plain.backward(env_p, c)["x"], rtol=1e-5, atol=1e-5)
    assert "s" not in fixed.backward(env_p, c)


def test_the_zoo_residual_net_runs_its_convolutions_and_normalisations_on_the_fixed_kernels() -> None:
    from benchmarks.zoo.nets import NetSpec, build

    handle = OnnxModel(build(NetSpec("resnet", 4, "LeakyRelu", output="probs"), (3, 16, 16), 10))
    assert handle.exact_gradients and handle.tape is not None
    ops = sorted({handle.tape.nodes[i].op for i in handle.tape.kernels})
    assert ops == ["BatchNormalization", "Conv"] and len(handle.tape.kernels) == 2 * 7  # 7 conv + BN pairs
    x = np.random.default_rng(7).random((4, 3, 16, 16)).astype(np.float32)
    plain = GraphTape(handle.model)
    c = np.random.default_rng(8).normal(size=(4, 10)).astype(np.float32)
    _z, gx = handle.value_and_grad(x, lambda z: c)
    env = plain.forward(x)
    np.testing.assert_allclose(gx, plain.backward(env, c)[plain.input], rtol=1e-4, atol=1e-6)


POOLS: list[tuple[str, str, dict[str, Any], int, bool]] = [  # (name, op, attributes, side, has a kernel)
    ("max 2x2 stride 2", "MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 8, True),
    ("max 3x3 stride 2, pads", "MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 9, True),
    ("max dilation 2", "MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, 7, True),
    ("max ceil mode on an odd side", "MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, 7, True),
    ("max auto_pad SAME_UPPER", "MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 9,
     True),
    ("average 2x2 stride 2", "AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 8, True),
    ("average 3x3 stride 2 on an odd side", "AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2]}, 9, True),
    ("average, pads counted", "AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
     6, True),
    ("average, pads not counted: numpy", "AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 6, False),
    ("average, ceil mode: numpy", "AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, 7,
     False),
]


@pytest.mark.parametrize(("op", "attrs", "side", "kernel"), [p[1:] for p in POOLS], ids=[p[0] for p in POOLS])
def test_fixed_pooling_gives_the_numpy_tapes_output_and_input_gradient(
        op: str, attrs: dict[str, Any], side: int, kernel: bool) -> None:
    r = np.random.default_rng(9)
    params = {"W": r.normal(size=(3, 2, 3, 3)), "L": r.normal(size=(2,))}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["p"], **attrs),
             helper.make_node("ReduceSum", ["p", "axes"], ["s"], keepdims=0),
             helper.make_node("Unsqueeze", ["s", "one"], ["u"]),
             helper.make_node("Mul", ["u", "L"], ["y"])]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, side, side])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
                          + [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
                             numpy_helper.from_array(np.array([1], np.int64), "one")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    plain, fixed = GraphTape(model), GraphTape(model, fixed_weights=True)
    assert sorted(fixed.nodes[i].op for i in fixed.kernels) == sorted(["Conv", *([op] if kernel else [])])
    x = np.random.default_rng(10).normal(size=(3, 2, side, side)).astype(np.float32)
    c = np.random.default_rng(11).normal(size=(3, 2)).astype(np.float32)
    env_p, env_f = plain.forward(x), fixed.forward(x)
    np.testing.assert_allclose(env_f["p"], env_p["p"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fixed.backward(env_p, c)["x"], plain.backward(env_p, c)["x"], rtol=1e-5, atol=1e-5)
