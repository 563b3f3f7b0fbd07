"""The per-feature affine map a graph starts with (a scaler fitted on the training data), read off the graph.

scikit-learn pipelines export their scaler into the model: skl2onnx writes a ``StandardScaler`` as an
``ai.onnx.ml`` Scaler (``(x - offset) * scale``) and a ``MinMaxScaler`` as Mul and Add by constant vectors;
other exporters write input normalisation as Sub / Div by constants. Such a map records each feature's range
in the training data (MinMaxScaler: exactly; StandardScaler: its mean and spread), which the trigger searches
use to stay inside what the model was trained on (:mod:`..domain.search_box`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Arr = np.ndarray[Any, Any]
_FLOAT_CASTS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


def _constants(graph: onnx.GraphProto) -> dict[str, Arr]:
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            found[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return found


def _per_feature(value: Arr, shape: tuple[int, ...]) -> Arr | None:
    """``value`` broadcast to one sample's ``shape`` (a leading batch dim of 1 dropped), or ``None``."""
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == len(shape) + 1 and v.shape[0] == 1:
        v = v[0]
    try:
        return np.broadcast_to(v, shape).copy() if v.ndim <= len(shape) else None
    except ValueError:
        return None


def _scaler_attrs(node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[Arr, Arr] | None:
    attrs = {a.name: list(a.floats) for a in node.attribute}
    offset, scale = (_per_feature(np.asarray(attrs.get(k) or [d]), shape) for k, d in (("offset", 0.0), ("scale", 1.0)))
    return None if offset is None or scale is None else (offset, scale)


def leading_affine(model: onnx.ModelProto, input_name: str, shape: tuple[int, ...]) -> tuple[Arr, Arr] | None:
    """``(a, b)`` with the graph's first values ``a * x + b`` per feature of a sample of ``shape``, when the graph
    starts with elementwise affine ops on constants (Scaler, Mul, Add, Sub, Div, and Cast / Identity between);
    ``None`` when it does not, or when the map is the same for every feature."""
    graph, consts = model.graph, _constants(model.graph)
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    a, b, cur = np.ones(shape), np.zeros(shape), input_name
    while len(users.get(cur, [])) == 1:
        n = users[cur][0]
        cast = n.op_type == "Cast" and any(x.name == "to" and x.i in _FLOAT_CASTS for x in n.attribute)
        if n.op_type == "Identity" or cast:
            cur = n.output[0]
            continue
        if n.op_type == "Scaler" and (found := _scaler_attrs(n, shape)) is not None:
            offset, scale = found
            a, b, cur = a * scale, (b - offset) * scale, n.output[0]
            continue
        other = [k for k in n.input if k != cur]
        if n.op_type not in ("Mul", "Add", "Sub", "Div") or len(other) != 1 or other[0] not in consts:
            break
        c = _per_feature(consts[other[0]], shape)
        first = n.input[0] == cur
        if c is None or (n.op_type == "Div" and (not first or not np.all(c != 0))):
            break
        if n.op_type == "Mul":
            a, b = a * c, b * c
        elif n.op_type == "Div":
            a, b = a / c, b / c
        elif n.op_type == "Add":
            b = b + c
        else:
            a, b = (a, b - c) if first else (-a, c - b)
        cur = n.output[0]
    if cur == input_name or (np.allclose(a, a.flat[0]) and np.allclose(b, b.flat[0])):
        return None
    return a.astype(np.float32), b.astype(np.float32)
