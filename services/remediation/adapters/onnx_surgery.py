"""Find the layer to prune in an ONNX graph, zero its units, and write the edited model.

A *site* is a producer (Conv, Gemm, or MatMul [+ Add bias]) whose output reaches exactly one linear
consumer through element-wise activations, pooling and Flatten/Reshape. Pruning unit ``u`` zeroes
the producer's weights and bias for ``u`` and the consumer's input weights that read ``u`` (for a
Conv feeding a Flatten, the ``H*W`` consecutive inputs of channel ``u``), so the unit has no
effect whatever the activation function or a BatchNorm in between does with a zero input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Arr = np.ndarray[Any, Any]
_LINEAR = {"Conv", "Gemm", "MatMul"}
_NONLINEAR = {"Relu", "LeakyRelu", "Tanh", "Sigmoid", "Clip", "Elu", "Selu", "HardSigmoid", "Softplus"}
_PASS = {"BatchNormalization", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool",
         "GlobalMaxPool", "Flatten", "Reshape"}


class SurgeryError(ValueError):
    """The graph has no layer this module knows how to prune."""


@dataclass(frozen=True)
class Site:
    """Where to prune. ``zero``: (initializer, axis, span) triples; unit ``u`` owns ``[u*span, (u+1)*span)``."""

    kind: str  # "conv" or "dense"
    activation: str  # tensor whose per-unit mean activation is measured
    units: int
    zero: tuple[tuple[str, int, int], ...]


def _weight(node: onnx.NodeProto, params: dict[str, Arr]) -> Arr | None:
    return params.get(node.input[1]) if node.op_type in _LINEAR and len(node.input) > 1 else None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _producer(node: onnx.NodeProto, w: Arr, params: dict[str, Arr]) -> tuple[int, list[tuple[str, int, int]]]:
    if node.op_type == "Conv" or (node.op_type == "Gemm" and _attr(node, "transB", 0)):
        axis = 0
    elif w.ndim == 2 and not (node.op_type == "Gemm" and _attr(node, "transA", 0)):
        axis = 1
    else:
        raise SurgeryError(f"{node.op_type} {node.name or node.output[0]}: unsupported weight layout")
    units = int(w.shape[axis])
    zero = [(node.input[1], axis, 1)]
    if len(node.input) > 2 and node.input[2] in params:
        b = params[node.input[2]]
        if b.size != units:
            raise SurgeryError(f"bias {node.input[2]} has shape {b.shape}, expected {units} values")
        zero.append((node.input[2], b.ndim - 1, 1))
    return units, zero


def _consumer_axis(node: onnx.NodeProto) -> int:
    if node.op_type == "Conv" or (node.op_type == "Gemm" and _attr(node, "transB", 0)):
        return 1
    return 0


def _build(node: onnx.NodeProto, g: onnx.GraphProto, params: dict[str, Arr]) -> Site | None:
    w = _weight(node, params)
    if w is None:
        return None
    try:
        units, zero = _producer(node, w, params)
    except SurgeryError:
        return None
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    t, act = node.output[0], None
    while True:
        nxt = users.get(t, [])
        if len(nxt) != 1 or t in outputs:
            return None
        n = nxt[0]
        if n.op_type == "Add" and t == node.output[0] and node.op_type == "MatMul" and n.input[1] in params \
                and params[n.input[1]].size == units:
            zero.append((n.input[1], params[n.input[1]].ndim - 1, 1))
        elif (cw := _weight(n, params)) is not None and n.input[0] == t:
            axis = _consumer_axis(n)
            span, rest = divmod(int(cw.shape[axis]), units)
            if rest or (span > 1 and node.op_type != "Conv"):
                return None
            zero.append((n.input[1], axis, span))
            kind = "conv" if node.op_type == "Conv" else "dense"
            return Site(kind, act or node.output[0], units, tuple(zero))
        elif n.op_type in _NONLINEAR:
            act = act or n.output[0]
        elif n.op_type not in _PASS:
            return None
        t = n.output[0]


def find_site(model: onnx.ModelProto, layer: str = "auto") -> Site:
    """The layer to prune: ``auto`` = last prunable Conv, else the last prunable dense layer."""
    g = model.graph
    params = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    sites = [s for n in g.node if (s := _build(n, g, params)) is not None]
    if layer in ("conv", "dense"):
        sites = [s for s in sites if s.kind == layer]
    elif layer == "auto":
        sites = [s for s in sites if s.kind == "conv"] or sites
    else:
        sites = [s for s in sites if s.activation == layer]
    if not sites:
        raise SurgeryError(f"no prunable layer matches {layer!r} (need Conv/Gemm/MatMul feeding one linear "
                           "layer through activations, pooling or Flatten)")
    return sites[-1]


def keep_masks(params: dict[str, Arr], site: Site, units: list[int]) -> dict[str, Arr]:
    """Float masks (1 keep, 0 pruned) for the initializers ``site`` touches."""
    masks: dict[str, Arr] = {}
    for name, axis, span in site.zero:
        m = masks.get(name, np.ones_like(params[name], dtype=np.float32))
        idx: list[Any] = [slice(None)] * m.ndim
        idx[axis] = np.asarray([u * span + k for u in units for k in range(span)], dtype=np.int64)
        m[tuple(idx)] = 0.0
        masks[name] = m
    return masks


def apply_masks(params: dict[str, Arr], masks: dict[str, Arr]) -> dict[str, Arr]:
    """Copy of ``params`` with the masked initializers zeroed."""
    out = dict(params)
    for name, m in masks.items():
        out[name] = (params[name] * m).astype(params[name].dtype)
    return out


def check_exportable(model: onnx.ModelProto) -> None:
    """Refuse, before any work, a model whose edited copy :func:`export` could not write: the checks it runs."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise SurgeryError(f"fails the ONNX checker, so its remediated copy could not be written: {exc}") from exc


def export(model: onnx.ModelProto, params: dict[str, Arr], path: Path) -> onnx.ModelProto:
    """Write ``model`` with its float initializers replaced by ``params``; checked by ``onnx.checker``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in params and t.data_type == onnx.TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(np.asarray(params[t.name], dtype=np.float32), t.name))
    onnx.checker.check_model(out, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(path))
    return out
