"""The extra ONNX op rules match onnxruntime (forward) and central finite differences (input gradient).

Each case is a tiny graph from input ``x`` to output ``y``; ops without a gradient (comparisons, shapes,
indices) are wrapped in graphs whose output still depends on ``x``. The scikit-learn tests build by hand
what skl2onnx emits (ai.onnx.ml Scaler / Normalizer / LinearClassifier, a ZipMap head), so skl2onnx is
not needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_autodiff import GraphTape, UnsupportedGraph
from services.scanner.adapters.onnx_model import OnnxModel, open_model

pytestmark = pytest.mark.unit

Arr = np.ndarray[Any, Any]
N = helper.make_node
_R = np.random.default_rng(0)


def _x(*shape: int, lo: float | None = None, hi: float = 2.0) -> Arr:
    """Test inputs away from 0 (kinks of Abs, Relu-likes) unless a range is given."""
    if lo is not None:
        return _R.uniform(lo, hi, shape).astype(np.float32)
    v = _R.normal(size=shape)
    return (np.sign(v) * (np.abs(v) + 0.1)).astype(np.float32)


def _f(*values: float) -> Arr:
    return np.asarray(values, np.float32)


def _i(*values: int) -> Arr:
    return np.asarray(values, np.int64)


@dataclass
class Case:
    name: str
    nodes: list[onnx.NodeProto]
    x: Arr
    params: dict[str, Arr] = field(default_factory=dict)
    opset: int = 17

    def model(self) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in self.params.items()])
        ops = [helper.make_opsetid("", self.opset), helper.make_opsetid("ai.onnx.ml", 1)]
        m = helper.make_model(g, opset_imports=ops)
        m.ir_version = helper.find_min_ir_version_for(ops, ignore_unknown=True)
        return m


def _un(op: str, x: Arr, opset: int = 17, **attrs: Any) -> Case:
    return Case(f"{op}{attrs or ''}", [N(op, ["x"], ["y"], **attrs)], x, opset=opset)


def _ml(op: str, x: Arr, outputs: tuple[str, ...] = ("y",), **attrs: Any) -> Case:
    return Case(f"{op}{attrs.get('norm', attrs.get('post_transform', ''))}",
                [N(op, ["x"], list(outputs), domain="ai.onnx.ml", **attrs)], x)


W23 = _R.normal(size=(2, 3)).astype(np.float32)
ELEMENTWISE = [
    _un("Sqrt", _x(2, 3, lo=0.2)), _un("Exp", _x(2, 3)), _un("Log", _x(2, 3, lo=0.2)), _un("Neg", _x(2, 3)),
    _un("Abs", _x(2, 3)), _un("Reciprocal", _x(2, 3)), _un("Sin", _x(2, 3)), _un("Cos", _x(2, 3)),
    _un("Erf", _x(2, 3)), _un("Elu", _x(2, 3), alpha=0.7), _un("Selu", _x(2, 3)), _un("Celu", _x(2, 3), alpha=0.6),
    _un("Softplus", _x(2, 3)), _un("Softsign", _x(2, 3)), _un("HardSigmoid", _x(2, 4), alpha=0.3, beta=0.4),
    _un("HardSwish", _x(2, 4, lo=-2.9, hi=2.9), opset=14), _un("ThresholdedRelu", _x(2, 3, lo=1.2, hi=2) - 0.5),
    _un("Mish", _x(2, 3), opset=18), _un("Swish", _x(2, 3), opset=24, alpha=1.5),
    _un("Gelu", _x(2, 3), opset=20), _un("Gelu", _x(2, 3), opset=20, approximate="tanh"),
    _un("Floor", _x(2, 3) + 0.5), _un("Ceil", _x(2, 3) + 0.5), _un("Round", _x(2, 3) + 0.25), _un("Sign", _x(2, 3)),
    Case("Pow-float", [N("Pow", ["x", "e"], ["y"])], _x(2, 3, lo=0.3), {"e": _f(2.5)}),
    Case("Pow-int", [N("Pow", ["x", "e"], ["y"])], _x(2, 3), {"e": _i(3)}, opset=15),
    Case("PRelu", [N("PRelu", ["x", "s"], ["y"])], _x(2, 3, 2), {"s": _f(0.1, 0.2, -0.3).reshape(3, 1)}),
    Case("Max", [N("Neg", ["x"], ["n"]), N("Max", ["x", "p", "n"], ["y"])], _x(2, 3), {"p": _f(0.3, -0.2, 0.5)}),
    Case("Min", [N("Min", ["x", "p"], ["y"])], _x(2, 3), {"p": _f(0.3, -0.2, 0.5)}),
    Case("Sum", [N("Sum", ["x", "p", "x"], ["y"])], _x(2, 3), {"p": _f(0.3)}),
    Case("Mean", [N("Mean", ["x", "p"], ["y"])], _x(2, 3), {"p": W23}),
]

REDUCTIONS = [
    Case("ReduceMean-attr", [N("ReduceMean", ["x"], ["y"], axes=[1])], _x(2, 3, 2)),
    Case("ReduceMean-input", [N("ReduceMean", ["x", "a"], ["y"], keepdims=0)], _x(2, 3, 2), {"a": _i(-1, 1)}, 18),
    Case("ReduceMean-all", [N("ReduceMean", ["x"], ["y"], keepdims=0)], _x(2, 3), opset=18),
    Case("ReduceMean-noop", [N("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)], _x(2, 3), opset=18),
    Case("ReduceSum", [N("ReduceSum", ["x", "a"], ["y"])], _x(2, 3, 2), {"a": _i(0, 2)}, 13),
    Case("ReduceMax", [N("ReduceMax", ["x"], ["y"], axes=[2], keepdims=0)], _x(2, 3, 4)),
    Case("ReduceMin", [N("ReduceMin", ["x", "a"], ["y"])], _x(2, 3, 4), {"a": _i(1)}, 18),
    Case("ReduceL1", [N("ReduceL1", ["x"], ["y"], axes=[1])], _x(2, 3)),
    Case("ReduceL2", [N("ReduceL2", ["x"], ["y"], axes=[1])], _x(2, 3)),
    Case("ReduceSumSquare", [N("ReduceSumSquare", ["x"], ["y"], axes=[0])], _x(2, 3)),
    Case("ReduceLogSumExp", [N("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=0)], _x(2, 3)),
]

NORMS = [
    Case("LayerNorm", [N("LayerNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)], _x(2, 3, 4),
         {"s": _x(4), "b": _x(4)}),
    Case("LayerNorm-axis1", [N("LayerNormalization", ["x", "s"], ["y"], axis=1)], _x(2, 3, 2), {"s": _x(3, 2)}),
    Case("InstanceNorm", [N("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)], _x(2, 3, 4),
         {"s": _x(3), "b": _x(3)}),
    Case("GroupNorm", [N("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)], _x(2, 4, 3),
         {"s": _x(4), "b": _x(4)}, 21),
    Case("LpNormalization-L2", [N("LpNormalization", ["x"], ["y"], axis=1)], _x(2, 3, 2)),
    Case("LpNormalization-L1", [N("LpNormalization", ["x"], ["y"], axis=-1, p=1)], _x(2, 3)),
    Case("Softmax-opset11-axis1", [N("Softmax", ["x"], ["y"], axis=1)], _x(2, 3, 2), opset=11),
    Case("LogSoftmax-opset11", [N("LogSoftmax", ["x"], ["y"])], _x(2, 3, 2), opset=11),
]

SHAPES = [
    Case("Slice", [N("Slice", ["x", "s", "e", "a", "t"], ["y"])], _x(3, 4, 5),
         {"s": _i(1, -1), "e": _i(100, 0), "a": _i(1, 2), "t": _i(2, -2)}),
    Case("Slice-opset9", [N("Slice", ["x"], ["y"], starts=[0, 1], ends=[2, -1], axes=[0, 2])], _x(3, 2, 4), opset=9),
    Case("Split-input", [N("Split", ["x", "sp"], ["a", "b", "c"], axis=1), N("Mul", ["a", "b"], ["m"]),
                         N("Concat", ["m", "c"], ["y"], axis=1)], _x(2, 5), {"sp": _i(1, 1, 3)}),
    Case("Split-num-outputs", [N("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
                               N("Concat", ["c", "a"], ["y"], axis=1)], _x(2, 7), opset=18),
    Case("Split-attr", [N("Split", ["x"], ["a", "b"], axis=0, split=[1, 2]), N("Tanh", ["b"], ["y"])], _x(3, 2),
         opset=11),
    Case("Split-equal", [N("Split", ["x"], ["a", "b"], axis=-1), N("Sub", ["a", "b"], ["y"])], _x(2, 4)),
    Case("Expand", [N("Expand", ["x", "sh"], ["e"]), N("Mul", ["e", "w"], ["y"])], _x(2, 1, 3),
         {"sh": _i(4, 1), "w": _x(2, 4, 3)}),
    Case("Tile", [N("Tile", ["x", "r"], ["t"]), N("Mul", ["t", "w"], ["y"])], _x(2, 3), {"r": _i(2, 2), "w": _x(4, 6)}),
    Case("ConstantOfShape", [N("Shape", ["x"], ["s"]), N("ConstantOfShape", ["s"], ["c"],
                                                          value=numpy_helper.from_array(_f(0.5))),
                             N("Mul", ["x", "c"], ["y"])], _x(2, 3)),
    Case("Shape-start-end", [N("Shape", ["x"], ["s"], start=1, end=-1), N("Cast", ["s"], ["c"], to=1),
                             N("Mul", ["x", "c"], ["y"])], _x(2, 3, 2), opset=15),
    Case("Range-Cast", [N("Range", ["a", "b", "d"], ["r"]), N("Cast", ["r"], ["c"], to=1), N("Mul", ["x", "c"], ["y"])],
         _x(2, 3), {"a": np.asarray(0, np.int64), "b": np.asarray(3, np.int64), "d": np.asarray(1, np.int64)}),
    Case("ArgMax", [N("ArgMax", ["x"], ["m"], axis=1), N("Cast", ["m"], ["c"], to=1), N("Mul", ["x", "c"], ["y"])],
         _x(2, 3)),
    Case("ArgMin-last", [N("ArgMin", ["x"], ["m"], axis=0, keepdims=0, select_last_index=1),
                         N("Cast", ["m"], ["c"], to=1), N("Add", ["x", "c"], ["y"])], _x(2, 3)),
    Case("Cast-int", [N("Cast", ["x"], ["i"], to=7), N("Cast", ["i"], ["f"], to=1), N("Mul", ["x", "f"], ["y"])],
         _x(2, 3) * 3),
    Case("Gather-float", [N("Gather", ["x", "k"], ["y"], axis=1)], _x(2, 3, 2), {"k": _i(2, 0, 2)}),
    Case("Squeeze-all", [N("Squeeze", ["x"], ["y"])], _x(2, 1, 3), opset=11),
    Case("MatMul-vector", [N("MatMul", ["x", "v"], ["y"])], _x(2, 3), {"v": _x(3)}),
    Case("MatMul-vector-left", [N("MatMul", ["v", "x"], ["y"])], _x(3, 2), {"v": _x(3)}),
    Case("Constants", [N("Constant", [], ["c1"], value_floats=[0.5, -1.0, 2.0]),
                       N("Constant", [], ["c2"], value_float=3.0), N("Constant", [], ["c3"], value_int=2),
                       N("Constant", [], ["c4"], value_ints=[2, 3]),
                       N("Reshape", ["x", "c4"], ["r"]), N("Mul", ["r", "c1"], ["m"]), N("Add", ["m", "c2"], ["a"]),
                       N("Cast", ["c3"], ["c3f"], to=1), N("Mul", ["a", "c3f"], ["y"])], _x(6)),
    Case("Einsum-bmm", [N("Einsum", ["x", "w"], ["y"], equation="bij,bjk->bik")], _x(2, 2, 3), {"w": _x(2, 3, 2)}, 12),
    Case("Einsum-ellipsis", [N("Einsum", ["x", "w"], ["y"], equation="...ij,jk->...ik")], _x(2, 2, 3),
         {"w": _x(3, 2)}, 12),
    Case("Einsum-implicit", [N("Einsum", ["x", "w"], ["y"], equation="ij,kj")], _x(2, 3), {"w": _x(4, 3)}, 12),
    Case("Einsum-sum-out", [N("Einsum", ["x", "w"], ["y"], equation="ij,j->j")], _x(2, 3), {"w": _x(3)}, 12),
    Case("Einsum-attention", [N("Einsum", ["x", "x"], ["y"], equation="bhid,bhjd->bhij")], _x(1, 2, 3, 2), opset=12),
]

COMPARES = [Case(f"Where-{op}", [N(op, ["x", "t"], ["c"]), N("Neg", ["x"], ["n"]), N("Where", ["c", "x", "n"], ["y"])],
                 _x(2, 3), {"t": _f(0.2, -0.3, 0.0)})
            for op in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")]
COMPARES += [Case(f"Where-{op}", [N("Greater", ["x", "t"], ["c1"]), N("Less", ["x", "u"], ["c2"]),
                                  N(op, ["c1", "c2"], ["c"]), N("Not", ["c"], ["nc"]), N("Mul", ["x", "w"], ["xw"]),
                                  N("Where", ["nc", "x", "xw"], ["y"])], _x(2, 3),
                  {"t": _f(-0.5), "u": _f(0.5), "w": _x(3)}) for op in ("And", "Or", "Xor")]

SPATIAL = [
    Case("Pad-constant", [N("Pad", ["x", "p", "v"], ["y"])], _x(1, 2, 3, 3),
         {"p": _i(0, 0, 1, 2, 0, 0, 2, 1), "v": _f(0.7)}, 13),
    Case("Pad-reflect", [N("Pad", ["x", "p"], ["y"], mode="reflect")], _x(1, 2, 4, 3),
         {"p": _i(0, 0, 2, 1, 0, 0, 1, 2)}, 13),
    Case("Pad-edge", [N("Pad", ["x", "p"], ["y"], mode="edge")], _x(1, 2, 3, 3), {"p": _i(0, 0, 2, 1, 0, 0, 1, 2)}, 13),
    Case("Pad-wrap-axes", [N("Pad", ["x", "p", "", "a"], ["y"], mode="wrap")], _x(2, 3, 4), {"p": _i(1, 2, 2, 1),
                                                                                          "a": _i(1, -1)}, 19),
    Case("Pad-negative", [N("Pad", ["x", "p"], ["y"])], _x(2, 5), {"p": _i(0, -1, 1, 2)}, 13),
    Case("Pad-opset2", [N("Pad", ["x"], ["y"], pads=[0, 1, 0, 2], value=1.5)], _x(2, 3), opset=2),
    Case("Resize-nearest", [N("Resize", ["x", "", "s"], ["y"])], _x(1, 2, 2, 3), {"s": _f(1, 1, 2, 1.5)}, 13),
    Case("Resize-nearest-sizes", [N("Resize", ["x", "", "", "z"], ["y"], coordinate_transformation_mode="asymmetric",
                                    nearest_mode="floor")], _x(1, 1, 3, 4), {"z": _i(1, 1, 5, 2)}, 13),
    Case("Resize-linear", [N("Resize", ["x", "", "s"], ["y"], mode="linear")], _x(1, 2, 3, 3),
         {"s": _f(1, 1, 2, 2)}, 13),
    Case("Resize-linear-align", [N("Resize", ["x", "", "", "z"], ["y"], mode="linear",
                                   coordinate_transformation_mode="align_corners")], _x(1, 1, 3, 4),
         {"z": _i(1, 1, 5, 3)}, 13),
    Case("Resize-linear-down", [N("Resize", ["x", "", "s"], ["y"], mode="linear",
                                  coordinate_transformation_mode="pytorch_half_pixel")], _x(1, 1, 6, 4),
         {"s": _f(1, 1, 0.5, 0.75)}, 13),
    Case("Resize-axes", [N("Resize", ["x", "", "s"], ["y"], axes=[2, 3], nearest_mode="round_prefer_ceil")],
         _x(1, 2, 2, 3), {"s": _f(2, 2)}, 18),
    Case("Resize-opset10", [N("Resize", ["x", "s"], ["y"])], _x(1, 1, 2, 3), {"s": _f(1, 1, 2, 2)}, 10),
    Case("Upsample-nearest", [N("Upsample", ["x", "s"], ["y"])], _x(1, 2, 2, 3), {"s": _f(1, 1, 2, 3)}, 9),
    Case("Upsample-linear", [N("Upsample", ["x", "s"], ["y"], mode="linear")], _x(1, 1, 3, 3),
         {"s": _f(1, 1, 2, 2)}, 9),
    Case("Conv1d-same", [N("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER", strides=[2])], _x(2, 2, 7),
         {"w": _x(3, 2, 4), "b": _x(3)}),
    Case("Conv2d-same-lower", [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 1])], _x(1, 2, 5, 4),
         {"w": _x(2, 2, 2, 3)}),
    Case("Conv2d-valid", [N("Conv", ["x", "w"], ["y"], auto_pad="VALID")], _x(1, 2, 4, 4), {"w": _x(2, 2, 3, 3)}),
    Case("MaxPool-ceil", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
         _x(1, 2, 6, 6)),
    Case("MaxPool1d-same", [N("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER")],
         _x(2, 2, 7)),
    Case("AvgPool-ceil-incl", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                 ceil_mode=1, count_include_pad=1)], _x(1, 1, 6, 6)),
    Case("AvgPool-ceil-excl", [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
         _x(1, 1, 5, 5)),
    Case("AvgPool1d", [N("AveragePool", ["x"], ["y"], kernel_shape=[2], strides=[1], pads=[1, 0])], _x(1, 2, 5)),
    Case("GlobalMaxPool", [N("GlobalMaxPool", ["x"], ["y"])], _x(2, 3, 2, 3)),
    Case("GlobalAveragePool1d", [N("GlobalAveragePool", ["x"], ["y"])], _x(2, 3, 4)),
    Case("ConvTranspose-stride-pads-output-padding", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2],
                                                        pads=[1, 0, 1, 1], output_padding=[1, 0])],
         _x(2, 3, 3, 4), {"w": _x(3, 2, 3, 2), "b": _x(2)}),
    Case("ConvTranspose-group-dilation", [N("ConvTranspose", ["x", "w"], ["y"], group=2, dilations=[2, 1],
                                            strides=[1, 2])], _x(1, 4, 3, 3), {"w": _x(4, 3, 2, 2)}, 11),
    Case("ConvTranspose1d", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[3], pads=[1, 2])], _x(2, 2, 4),
         {"w": _x(2, 3, 4), "b": _x(3)}),
]

ML = [
    _ml("Scaler", _x(2, 3), offset=[0.5, -1.0, 0.0], scale=[2.0, 0.5, 3.0]),
    _ml("Normalizer", _x(2, 3), norm="L1"), _ml("Normalizer", _x(2, 3), norm="L2"),
    _ml("Normalizer", _x(2, 3, lo=0.1), norm="MAX"),
    *[_ml("LinearClassifier", _x(4, 3), ("label", "y"), coefficients=list(_x(9).astype(float)),
          intercepts=[0.1, -0.2, 0.3], classlabels_ints=[0, 1, 2], post_transform=p)
      for p in ("NONE", "LOGISTIC", "SOFTMAX")],
    *[Case(f"LinearClassifier-binary-{p}", [N("LinearClassifier", ["x"], ["label", "y"], domain="ai.onnx.ml",
                                              coefficients=[0.5, -1.0, 2.0], intercepts=[0.3], classlabels_ints=[3, 7],
                                              post_transform=p)], _x(4, 3)) for p in ("NONE", "LOGISTIC")],
]

CASES = ELEMENTWISE + REDUCTIONS + NORMS + SHAPES + COMPARES + SPATIAL + ML


def _ort(model: onnx.ModelProto, x: Arr, outputs: list[str] | None = None) -> list[Any]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(outputs, {"x": x})  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_forward_matches_onnxruntime(case: Case) -> None:
    model = case.model()
    want = np.asarray(_ort(model, case.x, ["y"])[0])
    got = GraphTape(model, "y", strip_softmax=False).forward(case.x)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _assert_input_gradient(model: onnx.ModelProto, x: Arr) -> None:
    """The tape's input gradient in float64 against central finite differences of a random projection."""
    tape = GraphTape(model, "y", strip_softmax=False)
    tape.params = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in tape.params.items()}
    x = x.astype(np.float64)
    env = tape.forward(x)
    c = np.random.default_rng(1).normal(size=np.shape(env["y"]))
    grad = tape.backward(env, c).get(tape.input, np.zeros_like(x))

    def f(xx: Arr) -> float:
        return float((tape.forward(xx)["y"] * c).sum())

    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = 1e-6
        num[idx] = (f(x + d) - f(x - d)) / 2e-6
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_input_gradient_matches_central_finite_differences(case: Case) -> None:
    _assert_input_gradient(case.model(), case.x)


def _vit_like() -> Case:
    """A two-head transformer block as torch.onnx exports it (opset 17, GELU as Erf, dynamic batch)."""
    r = np.random.default_rng(3)

    def w(*shape: int) -> Arr:
        return np.asarray(r.normal(size=shape) / np.sqrt(shape[0]), np.float32)

    p = {"Wp": w(8, 1, 2, 2), "cls": w(1, 1, 8), "pos": w(1, 5, 8), "g1": _x(8), "b1": _x(8), "g2": _x(8), "b2": _x(8),
         "Wqkv": w(8, 24), "Wo": w(8, 8), "W1": w(8, 16), "W2": w(16, 8), "Wh": w(8, 3), "bh": _x(3),
         "zero": np.asarray(0, np.int64), "ones": _i(1, 1), "ax0": _i(0), "tok": _i(0, 8, -1), "sp": _i(8, 8, 8),
         "heads": _i(0, 5, 2, 4), "flat": _i(0, 5, 8), "two": _f(2.0), "sqrt2": _f(np.sqrt(2.0)), "one": _f(1.0),
         "half": _f(0.5)}
    nodes = [N("Conv", ["x", "Wp"], ["pe"], strides=[2, 2]), N("Reshape", ["pe", "tok"], ["pr"]),
             N("Transpose", ["pr"], ["tokens"], perm=[0, 2, 1]),
             N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "zero"], ["batch"]),
             N("Unsqueeze", ["batch", "ax0"], ["b1d"]), N("Concat", ["b1d", "ones"], ["cls_shape"], axis=0),
             N("Expand", ["cls", "cls_shape"], ["cls_e"]), N("Concat", ["cls_e", "tokens"], ["t0"], axis=1),
             N("Add", ["t0", "pos"], ["t"]), N("LayerNormalization", ["t", "g1", "b1"], ["h"]),
             N("MatMul", ["h", "Wqkv"], ["qkv"]), N("Split", ["qkv", "sp"], ["q", "k", "v"], axis=2)]
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [N("Reshape", [name, "heads"], [f"{name}r"]), N("Transpose", [f"{name}r"], [f"{name}h"], perm=perm)]
    nodes += [N("MatMul", ["qh", "kh"], ["s0"]), N("Div", ["s0", "two"], ["s"]), N("Softmax", ["s"], ["att"], axis=-1),
              N("MatMul", ["att", "vh"], ["o"]), N("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              N("Reshape", ["ot", "flat"], ["of"]), N("MatMul", ["of", "Wo"], ["proj"]),
              N("Add", ["proj", "t"], ["res"]),
              N("LayerNormalization", ["res", "g2", "b2"], ["h2"]), N("MatMul", ["h2", "W1"], ["f1"]),
              N("Div", ["f1", "sqrt2"], ["fs"]), N("Erf", ["fs"], ["fe"]), N("Add", ["fe", "one"], ["fa"]),
              N("Mul", ["f1", "fa"], ["fm"]), N("Mul", ["fm", "half"], ["gelu"]), N("MatMul", ["gelu", "W2"], ["f2"]),
              N("Add", ["f2", "res"], ["out"]), N("Gather", ["out", "zero"], ["cls_out"], axis=1),
              N("Gemm", ["cls_out", "Wh", "bh"], ["y"])]
    return Case("vit", nodes, _x(2, 1, 4, 4), p)


def _keras_like() -> Case:
    """An NHWC CNN as tf2onnx exports it: Transpose, explicit Pad, Conv, ReduceMean pooling, Softmax."""
    r = np.random.default_rng(4)
    p = {"pads": _i(0, 0, 1, 1, 0, 0, 1, 1), "W": r.normal(size=(4, 2, 3, 3)).astype(np.float32), "B": _x(4),
         "D": r.normal(size=(4, 3)).astype(np.float32), "c": _x(3)}
    nodes = [N("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]), N("Pad", ["nchw", "pads"], ["padded"]),
             N("Conv", ["padded", "W", "B"], ["conv"], strides=[2, 2]), N("Relu", ["conv"], ["act"]),
             N("Transpose", ["act"], ["nhwc"], perm=[0, 2, 3, 1]),
             N("ReduceMean", ["nhwc"], ["pooled"], axes=[1, 2], keepdims=0),
             N("MatMul", ["pooled", "D"], ["logits0"]), N("Add", ["logits0", "c"], ["logits"]),
             N("Softmax", ["logits"], ["y"], axis=-1)]
    return Case("keras", nodes, _x(2, 6, 6, 2), p, 13)


def _opset11_like() -> Case:
    """An opset 11 export: a flatten computed from Shape / Gather / Unsqueeze (axes attribute) and Constant
    nodes, Clip with min and max inputs, a float -> double -> float Cast chain, variadic Sum and Mean."""
    r = np.random.default_rng(6)
    p = {"w": r.normal(size=(4, 1, 3, 3)).astype(np.float32), "lo": np.asarray(0.0, np.float32),
         "hi": np.asarray(6.0, np.float32), "D": r.normal(size=(3, 4 * 16)).astype(np.float32) / 8, "c": _x(3)}
    nodes = [N("Constant", [], ["zero"], value=numpy_helper.from_array(np.asarray(0, np.int64))),
             N("Constant", [], ["rest"], value=numpy_helper.from_array(_i(-1))),
             N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "zero"], ["n"], axis=0),
             N("Unsqueeze", ["n"], ["n1"], axes=[0]), N("Concat", ["n1", "rest"], ["flat_shape"], axis=0),
             N("Cast", ["x"], ["xd"], to=11), N("Cast", ["xd"], ["xf"], to=1),
             N("Conv", ["xf", "w"], ["conv"], pads=[1, 1, 1, 1]), N("Clip", ["conv", "lo", "hi"], ["act"]),
             N("Sigmoid", ["conv"], ["gate"]), N("Sum", ["act", "gate", "conv"], ["s"]),
             N("Mean", ["s", "act"], ["m"]), N("Reshape", ["m", "flat_shape"], ["f"]),
             N("Gemm", ["f", "D", "c"], ["y"], transB=1)]
    return Case("opset11", nodes, _x(2, 1, 4, 4), p, 11)


@pytest.mark.parametrize("build", [_vit_like, _keras_like, _opset11_like])
def test_exported_architectures_get_exact_gradients_matching_onnxruntime(build: Any) -> None:
    case = build()
    model = OnnxModel(case.model())
    assert model.exact_gradients
    want = np.asarray(_ort(case.model(), case.x, ["y"])[0])
    z = model.value_and_grad(case.x, lambda z: np.zeros_like(z))[0]
    got = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(axis=1, keepdims=True), model.predict(case.x), atol=1e-5)
    np.testing.assert_allclose(GraphTape(case.model(), "y", strip_softmax=False).forward(case.x)["y"], want,
                               rtol=1e-4, atol=1e-5)
    _assert_input_gradient(case.model(), case.x)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_linear_classifier_labels_match_onnxruntime(post: str) -> None:
    x = _x(20, 3)
    for coefs, inter, labels in [(list(_x(6).astype(float)), [0.1, -0.1], [4, 9]), ([1.0, -2.0, 0.5], [0.2], [4, 9]),
                                 (list(_x(9).astype(float)), [0.0, 0.1, 0.2], [5, 6, 7])]:
        model = Case("lc", [N("LinearClassifier", ["x"], ["label", "y"], domain="ai.onnx.ml", coefficients=coefs,
                              intercepts=inter, classlabels_ints=labels, post_transform=post)], x).model()
        model.graph.output.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, None))
        label, scores = _ort(model, x)
        env = GraphTape(model, "y").forward(x)
        np.testing.assert_array_equal(env["label"], label)
        np.testing.assert_allclose(env["y"], scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("node", "opset", "reason"), [
    (N("Resize", ["x", "", "s"], ["y"], mode="cubic"), 13, "Resize mode=cubic"),
    (N("Resize", ["x", "", "s"], ["y"], coordinate_transformation_mode="tf_crop_and_resize"), 13, "tf_crop_and_resize"),
    (N("Einsum", ["x"], ["y"], equation="ii->i"), 12, "repeated subscript"),
    (N("LinearClassifier", ["x"], ["l", "y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0], intercepts=[0.0],
       post_transform="PROBIT"), 17, "post_transform=PROBIT"),
    (N("Gelu", ["x"], ["y"], domain="com.microsoft"), 17, "domain com.microsoft"),
    (N("Hardmax", ["x"], ["y"]), 17, "Hardmax"),
    (N("ConvTranspose", ["x", "s"], ["y"], output_shape=[4]), 17, "ConvTranspose output_shape"),
    (N("ConvTranspose", ["x", "s"], ["y"], auto_pad="SAME_UPPER"), 17, "ConvTranspose auto_pad=SAME_UPPER"),
])
def test_settings_the_rules_do_not_implement_are_refused_at_load(node: onnx.NodeProto, opset: int, reason: str) -> None:
    model = Case("bad", [node], _x(2, 2), {"s": _f(1, 2)}, opset).model()
    with pytest.raises(UnsupportedGraph, match=reason):
        GraphTape(model, "y")


def test_a_consumed_secondary_output_of_a_single_output_rule_is_refused() -> None:
    nodes = [N("LayerNormalization", ["x", "s"], ["n", "mean"]), N("Add", ["n", "mean"], ["y"])]
    with pytest.raises(UnsupportedGraph, match="only the first output"):
        GraphTape(Case("ln", nodes, _x(2, 3), {"s": _x(3)}).model(), "y")


# -- scikit-learn exports (the structure skl2onnx emits) ------------------------------------------

def _ml_model(nodes: list[onnx.NodeProto], params: dict[str, Arr], features: int) -> onnx.ModelProto:
    zip_out = onnx.TypeProto()
    zip_out.sequence_type.elem_type.map_type.key_type = TensorProto.INT64
    zip_out.sequence_type.elem_type.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
    g = helper.make_graph(nodes, "skl", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, features])],
                          [helper.make_tensor_value_info("output_label", TensorProto.INT64, [None]),
                           helper.make_value_info("output_probability", zip_out)],
                          [numpy_helper.from_array(v, k) for k, v in params.items()])
    ops = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def _mlp_pipeline() -> onnx.ModelProto:
    """StandardScaler + MLPClassifier(8), three classes, as skl2onnx exports it."""
    r = np.random.default_rng(5)
    p = {"W1": r.normal(size=(4, 8)).astype(np.float32), "b1": r.normal(size=(1, 8)).astype(np.float32),
         "W2": r.normal(size=(8, 3)).astype(np.float32), "b2": r.normal(size=(1, 3)).astype(np.float32),
         "classes": np.array([0, 1, 2], np.int32), "shape_tensor": _i(-1)}
    nodes = [N("Scaler", ["X"], ["variable"], domain="ai.onnx.ml", offset=[0.1, -0.2, 0.3, 0.0],
               scale=[1.5, 0.5, 2.0, 1.0]),
             N("Cast", ["variable"], ["cast_input"], to=1),
             N("MatMul", ["cast_input", "W1"], ["mul_result"]), N("Add", ["mul_result", "b1"], ["add_result"]),
             N("Relu", ["add_result"], ["next_activations"]),
             N("MatMul", ["next_activations", "W2"], ["mul_result1"]), N("Add", ["mul_result1", "b2"], ["add_result1"]),
             N("Softmax", ["add_result1"], ["out_activations_result"]),
             N("ArgMax", ["out_activations_result"], ["argmax_output"], axis=1),
             N("ZipMap", ["out_activations_result"], ["output_probability"], domain="ai.onnx.ml",
               classlabels_int64s=[0, 1, 2]),
             N("ArrayFeatureExtractor", ["classes", "argmax_output"], ["afe"], domain="ai.onnx.ml"),
             N("Reshape", ["afe", "shape_tensor"], ["reshaped"]), N("Cast", ["reshaped"], ["output_label"], to=7)]
    return _ml_model(nodes, p, 4)


def _logistic_regression() -> onnx.ModelProto:
    """LogisticRegression, three classes, as skl2onnx exports it (LinearClassifier, L1 Normalizer, ZipMap)."""
    coef = np.random.default_rng(6).normal(size=12).astype(float)
    nodes = [N("LinearClassifier", ["X"], ["label", "probability_tensor"], domain="ai.onnx.ml",
               classlabels_ints=[0, 1, 2], coefficients=list(coef), intercepts=[0.2, -0.1, 0.0], multi_class=1,
               post_transform="SOFTMAX"),
             N("Cast", ["label"], ["output_label"], to=7),
             N("Normalizer", ["probability_tensor"], ["probabilities"], domain="ai.onnx.ml", norm="L1"),
             N("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])]
    return _ml_model(nodes, {}, 4)


@pytest.mark.parametrize(("build", "behind_zipmap"), [(_mlp_pipeline, "out_activations_result"),
                                                      (_logistic_regression, "probabilities")])
def test_skl2onnx_style_classifiers_open_with_exact_gradients(build: Any, behind_zipmap: str, tmp_path: Path) -> None:
    path = tmp_path / "skl.onnx"
    onnx.save(build(), str(path))
    model = open_model(path)
    assert model.exact_gradients and model.outputs_probabilities
    assert model.num_classes == 3 and model.output_name == behind_zipmap and model.input_shape == (4,)
    assert open_model(path, output="output_probability").output_name == behind_zipmap
    x = np.random.default_rng(7).normal(size=(6, 4)).astype(np.float32)
    labels, maps = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    probs = np.array([[m[k] for k in sorted(m)] for m in maps])
    np.testing.assert_allclose(model.predict(x), probs, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x).argmax(axis=1), labels)
    c = np.random.default_rng(8).normal(size=(6, 3)).astype(np.float32)
    c -= c.mean(axis=1, keepdims=True)  # log-probabilities and logits agree up to a per-row shift
    grad = model.value_and_grad(x, lambda z: c)[1]
    d = np.zeros_like(x)
    d[2, 1] = 1e-2
    num = float(((model.logits(x + d) - model.logits(x - d)) * c).sum()) / 2e-2
    assert grad[2, 1] == pytest.approx(num, rel=2e-2, abs=1e-3)


def _rows_classifier(op: str, gates: int) -> onnx.ModelProto:
    """A sequence classifier over the 8 rows of a flat 8 x 8 digit, as torch.onnx exports nn.LSTM / GRU / RNN."""
    r = np.random.default_rng(5)
    p = {"sh": _i(0, 8, 8), "W": r.normal(size=(1, gates * 6, 8)).astype(np.float32),
         "R": r.normal(size=(1, gates * 6, 6)).astype(np.float32), "B": _x(1, 2 * gates * 6), "ax": _i(0),
         "D": _x(3, 6), "c": _x(3)}
    nodes = [N("Reshape", ["x", "sh"], ["rows"]), N("Transpose", ["rows"], ["seq"], perm=[1, 0, 2]),
             N(op, ["seq", "W", "R", "B"], ["", "h"], hidden_size=6), N("Squeeze", ["h", "ax"], ["last"]),
             N("Gemm", ["last", "D", "c"], ["y"], transB=1)]
    model = Case(op, nodes, _x(4, 64), p, 14).model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"  # a dynamic batch, as exported
    return model


@pytest.mark.parametrize(("op", "gates"), [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_a_recurrent_classifier_falls_back_to_estimated_gradients_and_says_so(op: str, gates: int) -> None:
    # the tape has no recurrent rules yet: the scan must still run, on the gradient-free estimate, and say why
    model = OnnxModel(_rows_classifier(op, gates))
    assert not model.exact_gradients and model.gradient_note == (
        f"estimated (NES): ops not supported by the gradient interpreter: {op}")
    x = _x(3, 64, lo=0.0, hi=1.0)
    z, g = model.value_and_grad(x, lambda z: np.eye(3, dtype=np.float32)[np.zeros(len(z), int)])
    assert z.shape == (3, 3) and g.shape == x.shape and np.isfinite(g).all() and np.abs(g).sum() > 0
