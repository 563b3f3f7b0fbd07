"""Numpy forward and reverse-mode rules for the common ONNX operator subset.

Each rule is ``forward(inputs, attrs) -> output`` and ``backward(inputs, output, attrs, grad_out) ->
grads per input`` (``None`` where an input is not differentiable, e.g. a shape). Only ops that small
classifiers use are covered; :mod:`onnx_autodiff` falls back to a gradient-free estimate for anything
else, so an unknown op is never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from services.scanner.adapters.onnx_spatial_ops import (
    avgpool_b,
    avgpool_f,
    conv_b,
    conv_f,
    maxpool_b,
    maxpool_f,
)

Arr = np.ndarray[Any, Any]
Attrs = dict[str, Any]
Grads = list[Arr | None]
Forward = Callable[[list[Arr], Attrs], Arr]
Backward = Callable[[list[Arr], Arr, Attrs, Arr], Grads]


def unbroadcast(grad: Arr, shape: Sequence[int]) -> Arr:
    """Sum ``grad`` down to ``shape`` (undo numpy broadcasting)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _binary(fwd: Callable[[Arr, Arr], Arr], ga: Callable[[Arr, Arr, Arr], Arr],
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
    if w.ndim == 1 or x.ndim == 1:
        raise NotImplementedError("MatMul with a vector operand")
    return [unbroadcast(g @ np.swapaxes(w, -1, -2), x.shape), unbroadcast(np.swapaxes(x, -1, -2) @ g, w.shape)]


def _softmax(x: Arr, axis: int) -> Arr:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]


def _softmax_b(_i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    axis = a.get("axis", -1)
    return [o * (g - (g * o).sum(axis=axis, keepdims=True))]


def _logsoftmax_f(i: list[Arr], a: Attrs) -> Arr:
    x, axis = i[0], a.get("axis", -1)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))  # type: ignore[no-any-return]


def _logsoftmax_b(_i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    return [g - np.exp(o) * g.sum(axis=a.get("axis", -1), keepdims=True)]


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


def _unary(fwd: Callable[[Arr, Attrs], Arr], dfn: Callable[[Arr, Arr, Attrs], Arr]) -> tuple[Forward, Backward]:
    return (lambda i, a: fwd(i[0], a)), (lambda i, o, a, g: [g * dfn(i[0], o, a)] + [None] * (len(i) - 1))


def _nondiff(fwd: Forward) -> tuple[Forward, Backward]:
    return fwd, lambda i, _o, _a, _g: [None] * len(i)


def _axes(i: list[Arr], a: Attrs) -> list[int]:
    return [int(v) for v in (i[1] if len(i) > 1 else a["axes"])]


RULES: dict[str, tuple[Forward, Backward]] = {
    "Gemm": (_gemm_f, _gemm_b),
    "MatMul": ((lambda i, a: i[0] @ i[1]), _matmul_b),
    "Add": _binary(np.add, lambda a, b, g: g, lambda a, b, g: g),
    "Sub": _binary(np.subtract, lambda a, b, g: g, lambda a, b, g: -g),
    "Mul": _binary(np.multiply, lambda a, b, g: g * b, lambda a, b, g: g * a),
    "Div": _binary(np.divide, lambda a, b, g: g / b, lambda a, b, g: -g * a / (b * b)),
    "Relu": _unary(lambda x, a: np.maximum(x, 0), lambda x, o, a: (x > 0).astype(x.dtype)),
    "LeakyRelu": _unary(lambda x, a: np.where(x > 0, x, a.get("alpha", 0.01) * x),
                        lambda x, o, a: np.where(x > 0, 1.0, a.get("alpha", 0.01)).astype(x.dtype)),
    "Sigmoid": _unary(lambda x, a: 1.0 / (1.0 + np.exp(-x)), lambda x, o, a: o * (1 - o)),
    "Tanh": _unary(lambda x, a: np.tanh(x), lambda x, o, a: 1 - o * o),
    "Softmax": ((lambda i, a: _softmax(i[0], a.get("axis", -1))), _softmax_b),
    "LogSoftmax": (_logsoftmax_f, _logsoftmax_b),
    "Flatten": (_flatten_f, _shape_back),
    "Reshape": (_reshape_f, _shape_back),
    "Transpose": ((lambda i, a: i[0].transpose(a.get("perm"))), _transpose_b),
    "Conv": (conv_f, conv_b),
    "BatchNormalization": (_bn_f, _bn_b),
    "MaxPool": (maxpool_f, maxpool_b),
    "AveragePool": (avgpool_f, avgpool_b),
    "GlobalAveragePool": ((lambda i, a: i[0].mean(axis=(2, 3), keepdims=True)),
                          lambda i, o, a, g: [np.broadcast_to(g, i[0].shape) / (i[0].shape[2] * i[0].shape[3])]),
    "Concat": ((lambda i, a: np.concatenate(i, axis=a["axis"])), _concat_b),
    "Identity": ((lambda i, a: i[0]), lambda i, o, a, g: [g]),
    "Dropout": ((lambda i, a: i[0]), lambda i, o, a, g: [g] + [None] * (len(i) - 1)),
    "Clip": (_clip_f, _clip_b),
    "Squeeze": ((lambda i, a: np.squeeze(i[0], axis=tuple(_axes(i, a)))), _shape_back),
    "Unsqueeze": ((lambda i, a: np.expand_dims(i[0], axis=tuple(_axes(i, a)))), _shape_back),
    "Shape": _nondiff(lambda i, a: np.asarray(i[0].shape, dtype=np.int64)),
    "Gather": _nondiff(lambda i, a: np.take(i[0], i[1].astype(np.int64), axis=a.get("axis", 0))),
    "Cast": ((lambda i, a: i[0].astype(np.float32) if a.get("to") == 1 else i[0]), lambda i, o, a, g: [g]),
}
