"""Numpy forward and reverse-mode rules beyond the core subset: the rest of what exported classifiers use.

PyTorch, Keras (tf2onnx) and scikit-learn (skl2onnx) exports bring elementwise math and activations
(Erf, Gelu, HardSwish, Pow, ...), variadic Max/Min/Sum/Mean, reductions, LayerNorm / InstanceNorm /
GroupNorm, slicing and broadcasting (Slice, Split, Expand, Tile, Where), comparisons, Einsum, Pad and
Resize, the ``ai.onnx.ml`` Scaler, Normalizer, ArrayFeatureExtractor, LinearClassifier and SVMClassifier
(:mod:`onnx_svm_ops`), ConvTranspose
(:mod:`onnx_layer_ops`) and the quantized ops of :mod:`onnx_quant_ops`. Rules have the signatures of
:mod:`onnx_ops`. Ops with several outputs (Split, LinearClassifier) are in :data:`MULTI_RULES`: forward
returns one array per output, backward takes one gradient (or ``None``) per output. :data:`CHECKS`
name, at load, attribute settings the rules do not implement, so the tape refuses such a graph
instead of computing it wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce

import numpy as np
from scipy.special import erf as _scipy_erf  # scipy comes with scikit-learn, a runtime dependency

from services.scanner.adapters.onnx_index_ops import INDEX_MULTI_RULES, INDEX_RULES
from services.scanner.adapters.onnx_layer_ops import LAYER_CHECKS, LAYER_RULES
from services.scanner.adapters.onnx_ml_ops import ML_MULTI_RULES, ML_RULES, MultiBackward, MultiForward
from services.scanner.adapters.onnx_ops import (
    Arr,
    Attrs,
    Backward,
    Forward,
    Grads,
    nondiff,
    rest_none,
    stable_sigmoid,
    unary,
    unbroadcast,
)
from services.scanner.adapters.onnx_quant_ops import QUANT_CHECKS, QUANT_MULTI_RULES, QUANT_RULES
from services.scanner.adapters.onnx_spatial_ops import (
    RESIZE_COORDS,
    RESIZE_ROUNDING,
    astr,
    global_maxpool_b,
    global_maxpool_f,
    pad_b,
    pad_f,
    resize_b,
    resize_f,
    upsample_b,
    upsample_f,
)
from services.scanner.adapters.onnx_svm_ops import SVM_CHECKS, SVM_MULTI_RULES

Check = Callable[[Attrs], str | None]

_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_TWO_SQRT_PI = 2.0 / math.sqrt(math.pi)



# -- elementwise ----------------------------------------------------------------------------------

def erf(x: Arr) -> Arr:
    return np.asarray(_scipy_erf(x), dtype=x.dtype)



def _gelu_f(x: Arr, a: Attrs) -> Arr:
    if astr(a, "approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(_SQRT_2_PI * (x + 0.044715 * x ** 3)))  # type: ignore[no-any-return]
    return 0.5 * x * (1 + erf(x / math.sqrt(2.0)))  # type: ignore[no-any-return]


def _gelu_d(x: Arr, _o: Arr, a: Attrs) -> Arr:
    if astr(a, "approximate", "none") == "tanh":
        t = np.tanh(_SQRT_2_PI * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_PI * (1 + 3 * 0.044715 * x * x)  # type: ignore[no-any-return]
    return 0.5 * (1 + erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _mish_d(x: Arr, _o: Arr, _a: Attrs) -> Arr:
    t = np.tanh(np.logaddexp(0.0, x))
    return t + x * (1 - t * t) * stable_sigmoid(x)  # type: ignore[no-any-return]


def _swish_d(x: Arr, _o: Arr, a: Attrs) -> Arr:
    alpha = a.get("alpha", 1.0)
    s = stable_sigmoid(alpha * x)
    return s + alpha * x * s * (1 - s)  # type: ignore[no-any-return]


def _hardsigmoid_d(x: Arr, _o: Arr, a: Attrs) -> Arr:
    z = a.get("alpha", 0.2) * x + a.get("beta", 0.5)
    return np.where((z > 0) & (z < 1), a.get("alpha", 0.2), 0.0).astype(x.dtype)


_SELU_A, _SELU_G = 1.67326319217681884765625, 1.05070102214813232421875


def _elu(x: Arr, alpha: float, gamma: float) -> Arr:
    """``gamma * (x if x > 0 else alpha * (exp(x) - 1))``: Elu, Selu, and Celu on ``x / alpha``."""
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _elu_d(x: Arr, alpha: float, gamma: float) -> Arr:
    return gamma * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def _zero_d(x: Arr, _o: Arr, _a: Attrs) -> Arr:
    return np.zeros_like(x)


_UNARY: dict[str, tuple[Forward, Backward]] = {
    "Sqrt": unary(lambda x, a: np.sqrt(x), lambda x, o, a: 0.5 / o),
    "Exp": unary(lambda x, a: np.exp(x), lambda x, o, a: o),
    "Log": unary(lambda x, a: np.log(x), lambda x, o, a: 1 / x),
    "Neg": unary(lambda x, a: -x, lambda x, o, a: -np.ones_like(x)),
    "Abs": unary(lambda x, a: np.abs(x), lambda x, o, a: np.sign(x)),
    "Reciprocal": unary(lambda x, a: 1 / x, lambda x, o, a: -o * o),
    "Sin": unary(lambda x, a: np.sin(x), lambda x, o, a: np.cos(x)),
    "Cos": unary(lambda x, a: np.cos(x), lambda x, o, a: -np.sin(x)),
    "Erf": unary(lambda x, a: erf(x), lambda x, o, a: _TWO_SQRT_PI * np.exp(-x * x)),
    "Gelu": unary(_gelu_f, _gelu_d),
    "Elu": unary(lambda x, a: _elu(x, a.get("alpha", 1.0), 1.0), lambda x, o, a: _elu_d(x, a.get("alpha", 1.0), 1.0)),
    "Selu": unary(lambda x, a: _elu(x, a.get("alpha", _SELU_A), a.get("gamma", _SELU_G)),
                  lambda x, o, a: _elu_d(x, a.get("alpha", _SELU_A), a.get("gamma", _SELU_G))),
    "Celu": unary(lambda x, a: a.get("alpha", 1.0) * _elu(x / a.get("alpha", 1.0), 1.0, 1.0),
                  lambda x, o, a: _elu_d(x / a.get("alpha", 1.0), 1.0, 1.0)),
    "ThresholdedRelu": unary(lambda x, a: np.where(x > a.get("alpha", 1.0), x, 0.0),
                             lambda x, o, a: (x > a.get("alpha", 1.0)).astype(x.dtype)),
    "Softplus": unary(lambda x, a: np.logaddexp(0.0, x), lambda x, o, a: stable_sigmoid(x)),
    "Softsign": unary(lambda x, a: x / (1 + np.abs(x)), lambda x, o, a: 1 / (1 + np.abs(x)) ** 2),
    "HardSigmoid": unary(lambda x, a: np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1), _hardsigmoid_d),
    "HardSwish": unary(lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1),
                       lambda x, o, a: np.where(x < -3, 0.0, np.where(x > 3, 1.0, x / 3 + 0.5))),
    "Mish": unary(lambda x, a: x * np.tanh(np.logaddexp(0.0, x)), _mish_d),
    "Swish": unary(lambda x, a: x * stable_sigmoid(a.get("alpha", 1.0) * x), _swish_d),
    "Floor": unary(lambda x, a: np.floor(x), _zero_d),
    "Ceil": unary(lambda x, a: np.ceil(x), _zero_d),
    "Round": unary(lambda x, a: np.round(x), _zero_d),
    "Sign": unary(lambda x, a: np.sign(x), _zero_d),
}


def _pow_f(i: list[Arr], _a: Attrs) -> Arr:
    return np.power(i[0], i[1]).astype(i[0].dtype, copy=False)


def _pow_b(i: list[Arr], o: Arr, _a: Attrs, g: Arr) -> Grads:
    x, e = i
    gx = (g * e * np.power(x, e - 1)).astype(g.dtype, copy=False)
    ge = g * o * np.log(np.where(x > 0, x, 1)) if np.issubdtype(e.dtype, np.floating) else None
    return [unbroadcast(gx, x.shape), None if ge is None else unbroadcast(ge.astype(g.dtype, copy=False), e.shape)]


def _prelu_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    x, slope = i
    return [np.where(x > 0, g, g * slope), unbroadcast(np.where(x > 0, 0, g * x), slope.shape)]


# -- variadic elementwise -------------------------------------------------------------------------

def _sum_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    return [unbroadcast(g, t.shape) for t in i]


def _mean_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    return [unbroadcast(g / len(i), t.shape) for t in i]


def _extreme(pick: Callable[[Arr, Arr], Arr]) -> tuple[Forward, Backward]:
    """Max / Min: the gradient goes to the inputs that attain the extreme, shared between ties."""
    def backward(i: list[Arr], o: Arr, _a: Attrs, g: Arr) -> Grads:
        hits = [np.broadcast_to(t, o.shape) == o for t in i]
        share = g / reduce(np.add, [h.astype(g.dtype) for h in hits])
        return [unbroadcast(np.where(h, share, 0), t.shape) for h, t in zip(hits, i, strict=True)]

    return (lambda i, a: reduce(pick, i)), backward


# -- reductions -----------------------------------------------------------------------------------

Reducer = Callable[[Arr, tuple[int, ...], bool], Arr]
ReduceGrad = Callable[[Arr, Arr, Arr, tuple[int, ...]], Arr]  # x, output and grad (keepdims) -> grad x


def _reduce_axes(i: list[Arr], a: Attrs) -> tuple[int, ...] | None:
    """Axes to reduce (input from opset 13/18, else attribute); ``None`` means pass-through."""
    x = i[0]
    if len(i) > 1 and i[1].size:
        axes = [int(v) for v in i[1]]
    elif "axes" in a:
        axes = list(a["axes"])
    else:
        return None if a.get("noop_with_empty_axes", 0) else tuple(range(x.ndim))
    return tuple(sorted(ax % x.ndim for ax in axes))


def _reduction(fn: Reducer, dfn: ReduceGrad) -> tuple[Forward, Backward]:
    def forward(i: list[Arr], a: Attrs) -> Arr:
        axes = _reduce_axes(i, a)
        return i[0] if axes is None else fn(i[0], axes, bool(a.get("keepdims", 1)))

    def backward(i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
        x, axes = i[0], _reduce_axes(i, a)
        if axes is None:
            return [g, *rest_none(i)]
        keep = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
        return [dfn(x, o.reshape(keep), g.reshape(keep), axes).astype(g.dtype, copy=False), *rest_none(i)]

    return forward, backward


def _count(x: Arr, axes: tuple[int, ...]) -> int:
    return max(int(np.prod([x.shape[k] for k in axes])), 1)


def _extreme_d(x: Arr, o: Arr, g: Arr, axes: tuple[int, ...]) -> Arr:
    hit = x == o
    return np.where(hit, g / hit.sum(axis=axes, keepdims=True), 0.0)


def _logsumexp(x: Arr, axes: tuple[int, ...], keep: bool) -> Arr:
    m = x.max(axis=axes, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axes, keepdims=True))
    return out if keep else out.squeeze(axis=axes)  # type: ignore[no-any-return]


_REDUCE: dict[str, tuple[Forward, Backward]] = {
    "ReduceSum": _reduction(lambda x, ax, k: x.sum(axis=ax, keepdims=k),
                            lambda x, o, g, ax: np.broadcast_to(g, x.shape)),
    "ReduceMean": _reduction(lambda x, ax, k: x.mean(axis=ax, keepdims=k),
                             lambda x, o, g, ax: np.broadcast_to(g, x.shape) / _count(x, ax)),
    "ReduceMax": _reduction(lambda x, ax, k: x.max(axis=ax, keepdims=k), _extreme_d),
    "ReduceMin": _reduction(lambda x, ax, k: x.min(axis=ax, keepdims=k), _extreme_d),
    "ReduceL1": _reduction(lambda x, ax, k: np.abs(x).sum(axis=ax, keepdims=k), lambda x, o, g, ax: g * np.sign(x)),
    "ReduceL2": _reduction(lambda x, ax, k: np.sqrt((x * x).sum(axis=ax, keepdims=k)),
                           lambda x, o, g, ax: g * x / np.where(o > 0, o, 1)),
    "ReduceSumSquare": _reduction(lambda x, ax, k: (x * x).sum(axis=ax, keepdims=k), lambda x, o, g, ax: 2 * g * x),
    "ReduceLogSumExp": _reduction(_logsumexp, lambda x, o, g, ax: g * np.exp(x - o)),
}


# -- normalisation layers -------------------------------------------------------------------------

def _standardize(x: Arr, axes: tuple[int, ...], eps: float) -> tuple[Arr, Arr]:
    mu = x.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return (x - mu) * rstd, rstd


def _standardize_b(xhat: Arr, rstd: Arr, axes: tuple[int, ...], gxhat: Arr) -> Arr:
    return rstd * (gxhat - gxhat.mean(axis=axes, keepdims=True)  # type: ignore[no-any-return]
                   - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))


def _bias(i: list[Arr], k: int) -> Arr | None:
    return i[k] if len(i) > k and i[k].size else None


def _ln_axes(x: Arr, a: Attrs) -> tuple[int, ...]:
    return tuple(range(a.get("axis", -1) % x.ndim, x.ndim))


def _layernorm_f(i: list[Arr], a: Attrs) -> Arr:
    xhat = _standardize(i[0], _ln_axes(i[0], a), a.get("epsilon", 1e-5))[0]
    b = _bias(i, 2)
    return xhat * i[1] if b is None else xhat * i[1] + b


def _layernorm_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    axes = _ln_axes(i[0], a)
    xhat, rstd = _standardize(i[0], axes, a.get("epsilon", 1e-5))
    out: Grads = [_standardize_b(xhat, rstd, axes, g * i[1]), unbroadcast(g * xhat, i[1].shape)]
    return out + ([unbroadcast(g, i[2].shape)] if len(i) > 2 else [])


def _channel(v: Arr, ndim: int) -> Arr:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _not_channel(x: Arr) -> tuple[int, ...]:
    return tuple(k for k in range(x.ndim) if k != 1)


def _instnorm_f(i: list[Arr], a: Attrs) -> Arr:
    x = i[0]
    xhat = _standardize(x, tuple(range(2, x.ndim)), a.get("epsilon", 1e-5))[0]
    return xhat * _channel(i[1], x.ndim) + _channel(i[2], x.ndim)


def _instnorm_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, axes = i[0], tuple(range(2, i[0].ndim))
    xhat, rstd = _standardize(x, axes, a.get("epsilon", 1e-5))
    gx = _standardize_b(xhat, rstd, axes, g * _channel(i[1], x.ndim))
    return [gx, (g * xhat).sum(axis=_not_channel(x)), g.sum(axis=_not_channel(x))]


def _groups(x: Arr, a: Attrs) -> tuple[Arr, Arr]:
    """Per-group standardised x and 1/std, as [N, G, C/G * spatial]."""
    xg = x.reshape(x.shape[0], int(a["num_groups"]), -1)
    return _standardize(xg, (2,), a.get("epsilon", 1e-5))


def _per_channel(v: Arr, c: int) -> Arr:
    """Opset 18 gave scale and bias per group, opset 21 per channel."""
    return np.repeat(v, c // v.size)


def _groupnorm_f(i: list[Arr], a: Attrs) -> Arr:
    x, c = i[0], i[0].shape[1]
    xhat = _groups(x, a)[0].reshape(x.shape)
    return xhat * _channel(_per_channel(i[1], c), x.ndim) + _channel(_per_channel(i[2], c), x.ndim)


def _groupnorm_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, c = i[0], i[0].shape[1]
    xhat, rstd = _groups(x, a)
    gxhat = (g * _channel(_per_channel(i[1], c), x.ndim)).reshape(xhat.shape)
    gx = _standardize_b(xhat, rstd, (2,), gxhat).reshape(x.shape)
    gs = (g * xhat.reshape(x.shape)).sum(axis=_not_channel(x))
    return [gx, gs.reshape(i[1].size, -1).sum(axis=1), g.sum(axis=_not_channel(x)).reshape(i[2].size, -1).sum(axis=1)]



# -- load-time refusals ---------------------------------------------------------------------------

def _choice(op: str, key: str, default: str, allowed: set[str] | frozenset[str]) -> Check:
    def check(a: Attrs) -> str | None:
        v = astr(a, key, default)
        return None if v in allowed else f"{op} {key}={v}"

    return check


def _all(*checks: Check) -> Check:
    return lambda a: next((r for c in checks if (r := c(a)) is not None), None)


def _einsum_check(a: Attrs) -> str | None:
    lhs = astr(a, "equation", "").replace(" ", "").partition("->")[0]
    terms = [t.replace("...", "") for t in lhs.split(",")]
    return "Einsum with a repeated subscript in one operand" if any(len(set(t)) != len(t) for t in terms) else None


def _resize_check(a: Attrs) -> str | None:
    if a.get("antialias", 0):
        return "Resize antialias"
    return _all(_choice("Resize", "mode", "nearest", {"nearest", "linear", "bilinear"}),
                _choice("Resize", "coordinate_transformation_mode", "half_pixel", RESIZE_COORDS),
                _choice("Resize", "nearest_mode", "round_prefer_floor", RESIZE_ROUNDING),
                _choice("Resize", "keep_aspect_ratio_policy", "stretch", {"stretch"}))(a)


CHECKS: dict[str, Check] = {
    "Resize": _resize_check,
    "Upsample": _choice("Upsample", "mode", "nearest", {"nearest", "linear", "bilinear"}),
    "Pad": _choice("Pad", "mode", "constant", {"constant", "reflect", "edge", "wrap"}),
    "Gelu": _choice("Gelu", "approximate", "none", {"none", "tanh"}),
    "Normalizer": _choice("Normalizer", "norm", "MAX", {"MAX", "L1", "L2"}),
    "LinearClassifier": _choice("LinearClassifier", "post_transform", "NONE", {"NONE", "LOGISTIC", "SOFTMAX"}),
    "LpNormalization": lambda a: None if a.get("p", 2) in (1, 2) else f"LpNormalization p={a.get('p')}",
    "Einsum": _einsum_check,
    **QUANT_CHECKS,
    **LAYER_CHECKS,
    **SVM_CHECKS,
}

_COMPARE = {"Equal": np.equal, "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
            "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}


def _compare(fn: Callable[[Arr, Arr], Arr]) -> tuple[Forward, Backward]:
    return nondiff(lambda i, a: fn(i[0], i[1]))


EXTRA_RULES: dict[str, tuple[Forward, Backward]] = {
    **_UNARY,
    **_REDUCE,
    **{name: _compare(fn) for name, fn in _COMPARE.items()},
    "Pow": (_pow_f, _pow_b),
    "PRelu": ((lambda i, a: np.where(i[0] > 0, i[0], i[0] * i[1])), _prelu_b),
    "Max": _extreme(np.maximum),
    "Min": _extreme(np.minimum),
    "Sum": ((lambda i, a: reduce(np.add, i)), _sum_b),
    "Mean": ((lambda i, a: reduce(np.add, i) / len(i)), _mean_b),
    "LayerNormalization": (_layernorm_f, _layernorm_b),
    "InstanceNormalization": (_instnorm_f, _instnorm_b),
    "GroupNormalization": (_groupnorm_f, _groupnorm_b),
    "Not": nondiff(lambda i, a: np.logical_not(i[0])),
    "Range": nondiff(lambda i, a: np.arange(i[0].item(), i[1].item(), i[2].item()).astype(i[0].dtype)),
    "Pad": (pad_f, pad_b),
    "Resize": (resize_f, resize_b),
    "Upsample": (upsample_f, upsample_b),
    "GlobalMaxPool": (global_maxpool_f, global_maxpool_b),
}

EXTRA_RULES.update({**INDEX_RULES, **ML_RULES, **QUANT_RULES, **LAYER_RULES})

MULTI_RULES: dict[str, tuple[MultiForward, MultiBackward]] = {**INDEX_MULTI_RULES, **ML_MULTI_RULES,
                                                               **QUANT_MULTI_RULES, **SVM_MULTI_RULES}
