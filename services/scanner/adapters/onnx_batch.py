"""Free a batch dimension that an export fixed at 1, so the scan can feed batches.

Exports traced with one example (``torch.onnx.export`` without ``dynamic_axes``, tf2onnx with a fixed
signature) declare the input as [1, ...] and often bake the 1 into the constant shapes of their Reshape
nodes ([1, 64], [1, -1]). On a copy of the model, the batch dims of the inputs and outputs become
symbolic, stale intermediate shapes are dropped, and a constant Reshape target that starts with 1 starts
with 0 instead (ONNX: copy that dim from the input). The copy is only used when onnxruntime gives the
same outputs for a batch as the original does for its samples one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Arr = np.ndarray[Any, Any]
Runner = Callable[[onnx.ModelProto, Arr], Arr]  # (model, batch) -> output


def fixed_batch_of_one(model: onnx.ModelProto) -> bool:
    """True when the first graph input declares its batch dim as the number 1."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    return bool(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1


def free_batch(model: onnx.ModelProto, run: Runner, sample_shape: tuple[int, ...]) -> onnx.ModelProto | None:
    """A copy of ``model`` that takes any batch size, or ``None`` when the rewrite changes its outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in [*m.graph.input, *m.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del m.graph.value_info[:]
    consts = {t.name: t for t in m.graph.initializer}
    consts.update({n.output[0]: a.t for n in m.graph.node if n.op_type == "Constant" and n.output
                   for a in n.attribute if a.name == "value"})
    for n in m.graph.node:
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] in consts:
            tensor = consts[n.input[1]]
            shape = numpy_helper.to_array(tensor)
            if shape.ndim == 1 and shape.size and shape[0] == 1:
                tensor.CopyFrom(numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(shape.dtype),
                                                        tensor.name))
    probe = np.random.default_rng(0).uniform(0.0, 1.0, (3, *sample_shape)).astype(np.float32)
    try:
        batched = np.asarray(run(m, probe), dtype=np.float64)
    except Exception:  # onnxruntime refuses the rewritten graph: the batch of one is load-bearing
        return None
    one_by_one = np.concatenate([np.asarray(run(model, probe[i:i + 1]), dtype=np.float64) for i in range(3)])
    if batched.shape != one_by_one.shape or not np.allclose(batched, one_by_one, rtol=1e-4, atol=1e-5):
        return None
    return m
