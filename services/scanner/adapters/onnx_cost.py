"""What one sample costs a model, read off the ONNX graph: multiply-accumulates of one forward pass.

Detectors with an optimisation budget (Neural Cleanse) count work in these units rather than in
seconds, so their results do not depend on how busy the machine is. Conv, Gemm, MatMul, Einsum and
the ``ai.onnx.ml`` LinearClassifier and SVMClassifier count their multiply-accumulates (an SVM's kernel
against every support vector: a scikit-learn ``SVC`` on digits, 1,400 support vectors x 64 features, counted
as one operation per output it ran Neural Cleanse's full search, 7 minutes), every other node one operation
per output element; shapes come from ONNX shape inference with the batch dimension set to 1, helped
past the ``ai.onnx.ml`` ops it leaves unshaped (scikit-learn's Scaler, Normalizer, LinearClassifier).
The figure is an estimate for budgeting, not a benchmark.
"""

from __future__ import annotations

import contextlib
import math

import onnx
from onnx import helper, shape_inference

from services.scanner.adapters.onnx_index_ops import einsum_terms

_SAME_SHAPE_ML = {"Scaler", "Normalizer", "Binarizer", "Imputer"}


def _dims(v: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]


def macs_per_sample(model: onnx.ModelProto, sample_shape: tuple[int, ...] | None = None) -> int:
    """Multiply-accumulates (plus elementwise operations) of one forward pass of one sample;
    ``sample_shape`` fills the first input's non-batch dims when the graph leaves them symbolic."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n, i in enumerate(m.graph.input):
        dims = i.type.tensor_type.shape.dim
        wanted = [1, *sample_shape] if n == 0 and sample_shape is not None and len(dims) == len(sample_shape) + 1 \
            else [1] if dims else []
        for d, value in zip(dims, wanted, strict=False):
            d.Clear()
            d.dim_value = value
    m = _infer(m)
    shapes = _known_shapes(m)
    total = 0
    for n in m.graph.node:
        out = math.prod(shapes.get(n.output[0], [1]) or [1]) if n.output else 0
        if n.op_type == "Conv" and len(n.input) > 1:
            total += out * math.prod(shapes.get(n.input[1], [1, 1])[1:])
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0]) or [1]
            total += out * (a[0] if _trans_a(n) else a[-1])
        elif n.op_type == "LinearClassifier":
            total += len(_attr(n, "coefficients").floats)
        elif n.op_type in ("SVMClassifier", "SVMRegressor"):  # a kernel row per support vector, then the duals
            total += 2 * len(_attr(n, "support_vectors").floats) + len(_attr(n, "coefficients").floats)
        elif n.op_type == "Einsum":
            total += _einsum_macs(n, shapes) or out
        else:
            total += out
    return max(int(total), 1)


def _known_shapes(m: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {v.name: _dims(v) for v in [*m.graph.value_info, *m.graph.output, *m.graph.input]
              if v.type.tensor_type.HasField("shape")}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    return shapes


def _ml_shapes(n: onnx.NodeProto, shapes: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    """Output shapes of the ai.onnx.ml ops shape inference skips, from their input's shape."""
    x = shapes.get(n.input[0]) if n.input else None
    if x is None:
        return []
    if n.op_type in _SAME_SHAPE_ML:
        return [(n.output[0], x)]
    if n.op_type == "LinearClassifier" and len(n.output) > 1:
        targets = len(_attr(n, "intercepts").floats) or 1
        return [(n.output[1], [x[0] if len(x) > 1 else 1, 2 if targets == 1 else targets])]
    return []


def _infer(m: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference, re-run after declaring the outputs of ai.onnx.ml ops it cannot follow."""
    for _ in range(len(m.graph.node) + 1):
        with contextlib.suppress(Exception):  # an estimate: a graph inference cannot follow costs its inputs only
            m = shape_inference.infer_shapes(m)
        shapes = _known_shapes(m)
        extra = [(k, dims) for n in m.graph.node for k, dims in _ml_shapes(n, shapes) if k and k not in shapes]
        if not extra:
            break
        m.graph.value_info.extend(helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, d) for k, d in extra)
    return m


def _einsum_macs(n: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """Product of every subscript's size (one multiply-accumulate per combination)."""
    ins = [shapes.get(k) for k in n.input]
    if any(s is None for s in ins):
        return 0
    try:
        terms, _out = einsum_terms(_attr(n, "equation").s.decode(), [tuple(s or ()) for s in ins])
    except ValueError:
        return 0
    sizes = {c: d for t, s in zip(terms, ins, strict=True) for c, d in zip(t, s or (), strict=False)}
    return math.prod(sizes.values())


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    return next((a for a in node.attribute if a.name == name), onnx.AttributeProto())


def _trans_a(node: onnx.NodeProto) -> bool:
    return any(a.name == "transA" and a.i for a in node.attribute)
