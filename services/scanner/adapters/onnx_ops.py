"""Numpy forward and reverse-mode rules for the common ONNX operator subset.

Each rule is ``forward(inputs, attrs) -> output`` and ``backward(inputs, output, attrs, grad_out) ->
grads per input`` (``None`` where an input is not differentiable, e.g. a shape). Only ops that small
classifiers use are covered here; :mod:`onnx_extra_ops` adds the rest of what exported classifiers use,
and :mod:`onnx_autodiff` falls back to a gradient-free estimate for anything else, so an unknown op is
never silently wrong. Attributes arrive as ONNX gives them (strings as bytes, see
:func:`onnx_spatial_ops.astr`), plus ``_opset`` (the node's opset version) and ``_n_out`` (how many
outputs the node declares), both set by the tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from onnx.helper import tensor_dtype_to_np_dtype

from services.scanner.adapters.onnx_spatial_ops import (
    avgpool_b,
    avgpool_f,
    conv_b,
    conv_f,
    global_avgpool_b,
    global_avgpool_f,
    maxpool_b,
    maxpool_f,
    scatter_axis,
)

Arr = np.ndarray[Any, Any]
Attrs = dict[str, Any]
Grads = list[Arr | None]
Forward = Callable[[list[Arr], Attrs], Arr]
Backward = Callable[[list[Arr], Arr, Attrs, Arr], Grads]


def rest_none(i: list[Arr]) -> Grads:
    """No gradient for every input after the first."""
    return [None] * (len(i) - 1)


def stable_sigmoid(x: Arr) -> Arr:
    out: Arr = np.exp(-np.logaddexp(0.0, -x))
    return out


def unbroadcast(grad: Arr, shape: Sequence[int]) -> Arr:
    """Sum ``grad`` down to ``shape`` (undo numpy broadcasting)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def binary(fwd: Callable[[Arr, Arr], Arr], ga: Callable[[Arr, Arr, Arr], Arr],
            gb: Callable[[Arr, Arr, Arr], Arr]) -> tuple[Forward, Backward]:
    def forward(i: list[Arr], _a: Attrs) -> Arr:
        return fwd(i[0], i[1])

    def backward(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
        return [unbroadcast(ga(i[0], i[1], g), i[0].shape), unbroadcast(gb(i[0], i[1], g), i[1].shape)]

    return forward, backward


def _gemm_f(i: list[Arr], a: Attrs) -> Arr:
    x = i[0].T if a.get("transA", 0) else i[0]
    w = i[1].T if a.get("transB", 0) else i[1]
    y = a.get("alpha", 1.0) * (x @ w)
    out: Arr = y + a.get("beta", 1.0) * i[2] if len(i) > 2 else y
    return out


def _gemm_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    alpha = a.get("alpha", 1.0)
    x = i[0].T if a.get("transA", 0) else i[0]
    w = i[1].T if a.get("transB", 0) else i[1]
    gx, gw = alpha * (g @ w.T), alpha * (x.T @ g)
    out: Grads = [gx.T if a.get("transA", 0) else gx, gw.T if a.get("transB", 0) else gw]
    if len(i) > 2:
        out.append(unbroadcast(a.get("beta", 1.0) * g, i[2].shape))
    return out


def _matmul_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    x, w = i
    x2 = x[None, :] if x.ndim == 1 else x  # numpy's vector promotion, undone on the gradients
    w2 = w[:, None] if w.ndim == 1 else w
    g2 = g.reshape(np.matmul(x2, w2).shape)
    gx = unbroadcast(g2 @ np.swapaxes(w2, -1, -2), x2.shape)
    gw = unbroadcast(np.swapaxes(x2, -1, -2) @ g2, w2.shape)
    return [gx.reshape(x.shape), gw.reshape(w.shape)]


def _softmax_view(x: Arr, a: Attrs) -> tuple[Arr, int]:
    """Opsets before 13 coerce the input to 2-D at ``axis`` (default 1) and normalise each row."""
    if a.get("_opset", 13) >= 13:
        return x, a.get("axis", -1)
    axis = a.get("axis", 1) % max(x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1), 1


def _softmax_f(i: list[Arr], a: Attrs) -> Arr:
    x, axis = _softmax_view(i[0], a)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).reshape(i[0].shape)  # type: ignore[no-any-return]


def _softmax_b(_i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    o2, axis = _softmax_view(o, a)
    g2 = g.reshape(o2.shape)
    return [(o2 * (g2 - (g2 * o2).sum(axis=axis, keepdims=True))).reshape(o.shape)]


def _logsoftmax_f(i: list[Arr], a: Attrs) -> Arr:
    x, axis = _softmax_view(i[0], a)
    m = x.max(axis=axis, keepdims=True)
    return (x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).reshape(i[0].shape)  # type: ignore[no-any-return]


def _logsoftmax_b(_i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    o2, axis = _softmax_view(o, a)
    g2 = g.reshape(o2.shape)
    return [(g2 - np.exp(o2) * g2.sum(axis=axis, keepdims=True)).reshape(o.shape)]


def _flatten_f(i: list[Arr], a: Attrs) -> Arr:
    axis = a.get("axis", 1)
    x = i[0]
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape_f(i: list[Arr], a: Attrs) -> Arr:
    shape = [int(s) for s in i[1]]
    if not a.get("allowzero", 0):
        shape = [i[0].shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return i[0].reshape(shape)


def _shape_back(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    return [g.reshape(i[0].shape)] + [None] * (len(i) - 1)


def _transpose_b(_i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    perm = a.get("perm")
    return [g.transpose(np.argsort(perm)) if perm is not None else g.T]


def _bn_f(i: list[Arr], a: Attrs) -> Arr:
    x, scale, bias, mean, var = i[:5]
    shp = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + a.get("epsilon", 1e-5))
    return x * inv.reshape(shp) + (bias - mean * inv).reshape(shp)  # type: ignore[no-any-return]


def _bn_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, scale, _b, mean, var = i[:5]
    shp = (1, -1) + (1,) * (x.ndim - 2)
    axes = tuple(k for k in range(x.ndim) if k != 1)
    std = np.sqrt(var + a.get("epsilon", 1e-5))
    xhat = (x - mean.reshape(shp)) / std.reshape(shp)
    return [g * (scale / std).reshape(shp), (g * xhat).sum(axis=axes), g.sum(axis=axes), None, None]


def _concat_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    cuts = np.cumsum([t.shape[a["axis"]] for t in i])[:-1]
    return list(np.split(g, cuts, axis=a["axis"]))


def _clip_f(i: list[Arr], a: Attrs) -> Arr:
    lo = i[1] if len(i) > 1 and i[1].size else a.get("min", -np.inf)
    hi = i[2] if len(i) > 2 and i[2].size else a.get("max", np.inf)
    return np.clip(i[0], lo, hi)


def _clip_b(i: list[Arr], o: Arr, _a: Attrs, g: Arr) -> Grads:
    return [np.where(o == i[0], g, 0.0)] + [None] * (len(i) - 1)


def unary(fwd: Callable[[Arr, Attrs], Arr], dfn: Callable[[Arr, Arr, Attrs], Arr]) -> tuple[Forward, Backward]:
    """An elementwise op from ``fwd(x, attrs)`` and its derivative ``dfn(x, output, attrs)``."""
    def backward(i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
        return [(g * dfn(i[0], o, a)).astype(g.dtype, copy=False)] + [None] * (len(i) - 1)

    return (lambda i, a: fwd(i[0], a)), backward


def nondiff(fwd: Forward) -> tuple[Forward, Backward]:
    """An op whose output does not depend differentiably on its inputs (shapes, masks, indices)."""
    return fwd, lambda i, _o, _a, _g: [None] * len(i)


def _gather_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, idx = i[0], i[1].astype(np.int64)
    if not np.issubdtype(x.dtype, np.floating):
        return [None, None]
    axis = a.get("axis", 0) % x.ndim
    flat = g.reshape(*x.shape[:axis], idx.size, *x.shape[axis + 1:])
    return [scatter_axis(flat, axis, idx.ravel() % x.shape[axis], x.shape[axis]), None]


_FLOATS = frozenset({1, 10, 11, 16})  # float, float16, double, bfloat16


def _cast_f(i: list[Arr], a: Attrs) -> Arr:
    to = int(a.get("to", 1))
    if to in _FLOATS:  # a float input keeps the tape's working precision (float64 in gradient checks)
        return i[0] if np.issubdtype(i[0].dtype, np.floating) else i[0].astype(np.float32)
    return i[0].astype(onnx_dtype(to))


def _cast_b(i: list[Arr], o: Arr, _a: Attrs, g: Arr) -> Grads:
    # a cast to an integer type stops the gradient (truncation); a cast *from* integers passes it on: the
    # producer of an integer tensor either has no gradient rule (shapes, indices) or is a quantized op
    # whose straight-through rule takes it (MatMulInteger -> Cast -> Mul by the scales)
    return [g if np.issubdtype(o.dtype, np.floating) else None]


def onnx_dtype(code: int) -> Any:
    """numpy dtype of an ONNX ``TensorProto`` data type code."""
    return tensor_dtype_to_np_dtype(code)


def _axes(i: list[Arr], a: Attrs) -> tuple[int, ...] | None:
    """Axes from the second input (opset >= 13) or the attribute; ``None`` when neither is given."""
    if len(i) > 1 and i[1].size:
        return tuple(int(v) for v in i[1])
    return tuple(a["axes"]) if "axes" in a else None


RULES: dict[str, tuple[Forward, Backward]] = {
    "Gemm": (_gemm_f, _gemm_b),
    "MatMul": ((lambda i, a: i[0] @ i[1]), _matmul_b),
    "Add": binary(np.add, lambda a, b, g: g, lambda a, b, g: g),
    "Sub": binary(np.subtract, lambda a, b, g: g, lambda a, b, g: -g),
    "Mul": binary(np.multiply, lambda a, b, g: g * b, lambda a, b, g: g * a),
    "Div": binary(np.divide, lambda a, b, g: g / b, lambda a, b, g: -g * a / (b * b)),
    "Relu": unary(lambda x, a: np.maximum(x, 0), lambda x, o, a: (x > 0).astype(x.dtype)),
    "LeakyRelu": unary(lambda x, a: np.where(x > 0, x, a.get("alpha", 0.01) * x),
                        lambda x, o, a: np.where(x > 0, 1.0, a.get("alpha", 0.01)).astype(x.dtype)),
    "Sigmoid": unary(lambda x, a: stable_sigmoid(x), lambda x, o, a: o * (1 - o)),
    "Tanh": unary(lambda x, a: np.tanh(x), lambda x, o, a: 1 - o * o),
    "Softmax": (_softmax_f, _softmax_b),
    "LogSoftmax": (_logsoftmax_f, _logsoftmax_b),
    "Flatten": (_flatten_f, _shape_back),
    "Reshape": (_reshape_f, _shape_back),
    "Transpose": ((lambda i, a: i[0].transpose(a.get("perm"))), _transpose_b),
    "Conv": (conv_f, conv_b),
    "BatchNormalization": (_bn_f, _bn_b),
    "MaxPool": (maxpool_f, maxpool_b),
    "AveragePool": (avgpool_f, avgpool_b),
    "GlobalAveragePool": (global_avgpool_f, global_avgpool_b),
    "Concat": ((lambda i, a: np.concatenate(i, axis=a["axis"])), _concat_b),
    "Identity": ((lambda i, a: i[0]), lambda i, o, a, g: [g]),
    "Dropout": ((lambda i, a: i[0]), lambda i, o, a, g: [g] + [None] * (len(i) - 1)),
    "Clip": (_clip_f, _clip_b),
    "Squeeze": ((lambda i, a: np.squeeze(i[0], axis=_axes(i, a))), _shape_back),
    "Unsqueeze": ((lambda i, a: np.expand_dims(i[0], axis=_axes(i, a) or ())), _shape_back),
    "Shape": nondiff(lambda i, a: np.asarray(i[0].shape[a.get("start", 0):a.get("end")], dtype=np.int64)),
    "Gather": ((lambda i, a: np.take(i[0], i[1].astype(np.int64), axis=a.get("axis", 0))), _gather_b),
    "Cast": (_cast_f, _cast_b),
}
