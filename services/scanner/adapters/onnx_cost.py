"""What one sample costs a model, read off the ONNX graph: multiply-accumulates of one forward pass.

Detectors with an optimisation budget (Neural Cleanse) count work in these units rather than in
seconds, so their results do not depend on how busy the machine is. Conv, Gemm and MatMul count
their multiply-accumulates, every other node one operation per output element; shapes come from
ONNX shape inference with the batch dimension set to 1. The figure is an estimate for budgeting,
not a benchmark.
"""

from __future__ import annotations

import contextlib
import math

import onnx
from onnx import shape_inference


def _dims(v: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]


def macs_per_sample(model: onnx.ModelProto) -> int:
    """Multiply-accumulates (plus elementwise operations) of one forward pass of one sample."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    with contextlib.suppress(Exception):  # an estimate: a graph inference cannot follow costs its inputs only
        m = shape_inference.infer_shapes(m)
    shapes = {v.name: _dims(v) for v in [*m.graph.value_info, *m.graph.output, *m.graph.input]}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    total = 0
    for n in m.graph.node:
        out = math.prod(shapes.get(n.output[0], [1]) or [1]) if n.output else 0
        if n.op_type == "Conv" and len(n.input) > 1:
            total += out * math.prod(shapes.get(n.input[1], [1, 1])[1:])
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0]) or [1]
            total += out * (a[0] if _trans_a(n) else a[-1])
        else:
            total += out
    return max(int(total), 1)


def _trans_a(node: onnx.NodeProto) -> bool:
    return any(a.name == "transA" and a.i for a in node.attribute)
