"""Numpy rules for vector normalisers and the ``ai.onnx.ml`` ops that scikit-learn exports bring.

LpNormalization, and from skl2onnx: Scaler, Normalizer, ArrayFeatureExtractor and LinearClassifier (outputs label
and scores, so it is a multi-output rule: forward returns both, backward takes one gradient or ``None`` each).
Signatures as in :mod:`onnx_ops`; merged into the tape's rules by :mod:`onnx_extra_ops`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from services.scanner.adapters.onnx_ops import Arr, Attrs, Backward, Forward, Grads, stable_sigmoid
from services.scanner.adapters.onnx_spatial_ops import astr

MultiForward = Callable[[list[Arr], Attrs], list[Arr]]
MultiBackward = Callable[[list[Arr], list[Arr], Attrs, list[Arr | None]], Grads]


# -- vector normalisers (LpNormalization, ai.onnx.ml Normalizer) ----------------------------------

def _norm_of(x: Arr, kind: str, axis: int) -> Arr:
    if kind == "MAX":
        return x.max(axis=axis, keepdims=True)  # type: ignore[no-any-return]
    if kind == "L1":
        return np.abs(x).sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]
    return np.sqrt((x * x).sum(axis=axis, keepdims=True))  # type: ignore[no-any-return]


def _norm_d(x: Arr, y: Arr, kind: str, axis: int) -> Arr:
    """d norm / d x."""
    if kind == "L1":
        return np.sign(x)
    if kind == "L2":
        return y
    pos = np.arange(x.shape[axis]).reshape([-1 if k == axis % x.ndim else 1 for k in range(x.ndim)])
    hit: Arr = pos == np.expand_dims(np.argmax(x, axis=axis), axis)
    return hit.astype(x.dtype)


def _normalize(x: Arr, kind: str, axis: int) -> Arr:
    d = _norm_of(x, kind, axis)
    return np.where(d != 0, x / np.where(d != 0, d, 1), 0)


def _normalize_b(x: Arr, y: Arr, kind: str, axis: int, g: Arr) -> Arr:
    d = _norm_of(x, kind, axis)
    gx = (g - (g * y).sum(axis=axis, keepdims=True) * _norm_d(x, y, kind, axis)) / np.where(d != 0, d, 1)
    return np.where(d != 0, gx, 0).astype(g.dtype, copy=False)


def _lp_kind(a: Attrs) -> str:
    return "L1" if a.get("p", 2) == 1 else "L2"


def _floaty(x: Arr) -> Arr:
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _ml_normalizer_f(i: list[Arr], a: Attrs) -> Arr:
    return _normalize(_floaty(i[0]), astr(a, "norm", "MAX"), -1)


def _ml_normalizer_b(i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    return [_normalize_b(_floaty(i[0]), o, astr(a, "norm", "MAX"), -1, g)]


def _scaler_f(i: list[Arr], a: Attrs) -> Arr:
    x = _floaty(i[0])
    out: Arr = (x - np.asarray(a.get("offset", [0.0]), x.dtype)) * np.asarray(a.get("scale", [1.0]), x.dtype)
    return out


# -- ai.onnx.ml LinearClassifier (outputs: label, scores) -----------------------------------------

def _linear(x: Arr, a: Attrs) -> tuple[Arr, Arr]:
    """Coefficients [T, F] and raw scores [N, T]."""
    x = _floaty(x).reshape(-1, x.shape[-1])
    inter = np.asarray(a.get("intercepts", []), x.dtype)
    coef = np.asarray(a["coefficients"], x.dtype).reshape(inter.size or -1, x.shape[1])
    return coef, x @ coef.T + (inter if inter.size else 0)


def _labels(a: Attrs) -> Arr:
    return np.asarray(a.get("classlabels_ints") or a.get("classlabels_strings") or [0, 1])


def _linclass_f(i: list[Arr], a: Attrs) -> list[Arr]:
    s, labels, post = _linear(i[0], a)[1], _labels(a), astr(a, "post_transform", "NONE")
    if s.shape[1] == 1:  # binary with one coefficient row: onnxruntime returns [1 - t, t]
        t = stable_sigmoid(s) if post == "LOGISTIC" else s
        return [np.where(s[:, 0] > 0, labels[-1], labels[0]), np.concatenate([1 - t, t], axis=1)]
    label = labels[np.argmax(s, axis=1)]
    if post == "LOGISTIC":
        return [label, stable_sigmoid(s)]
    if post == "SOFTMAX":
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return [label, e / e.sum(axis=1, keepdims=True)]
    return [label, s]


def _linclass_b(i: list[Arr], outs: list[Arr], a: Attrs, gs: list[Arr | None]) -> Grads:
    g = gs[1] if len(gs) > 1 else None
    if g is None:
        return [None]
    coef, sc, post = _linear(i[0], a)[0], outs[1], astr(a, "post_transform", "NONE")
    if coef.shape[0] == 1:
        t = sc[:, 1:]
        graw = (g[:, 1:] - g[:, :1]) * (t * (1 - t) if post == "LOGISTIC" else 1)
    elif post == "LOGISTIC":
        graw = g * sc * (1 - sc)
    elif post == "SOFTMAX":
        graw = sc * (g - (g * sc).sum(axis=1, keepdims=True))
    else:
        graw = g
    return [(graw @ coef).reshape(i[0].shape).astype(g.dtype, copy=False)]


# -- ai.onnx.ml ArrayFeatureExtractor: columns of the last axis (skl2onnx picks class pairs' decisions) ------

def _extract_f(i: list[Arr], a: Attrs) -> Arr:
    out: Arr = np.take(i[0], i[1].astype(np.int64).ravel(), axis=-1)
    return out[None] if i[0].ndim == 1 else out


def _extract_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, idx = i[0], i[1].astype(np.int64).ravel()
    if not np.issubdtype(x.dtype, np.floating):
        return [None, None]
    cols = np.zeros((idx.size, x.shape[-1]), dtype=g.dtype)
    cols[np.arange(idx.size), idx % x.shape[-1]] = 1.0  # a column picked twice gets both gradients
    return [g.reshape(*x.shape[:-1], idx.size) @ cols, None]


ML_RULES: dict[str, tuple[Forward, Backward]] = {
    "ArrayFeatureExtractor": (_extract_f, _extract_b),
    "LpNormalization": ((lambda i, a: _normalize(i[0], _lp_kind(a), a.get("axis", -1))),
                        lambda i, o, a, g: [_normalize_b(i[0], o, _lp_kind(a), a.get("axis", -1), g)]),
    "Scaler": (_scaler_f, lambda i, o, a, g: [g * np.asarray(a.get("scale", [1.0]), g.dtype)]),
    "Normalizer": (_ml_normalizer_f, _ml_normalizer_b),
}

ML_MULTI_RULES: dict[str, tuple[MultiForward, MultiBackward]] = {
    "LinearClassifier": (_linclass_f, _linclass_b),
}
