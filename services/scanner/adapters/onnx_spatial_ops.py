"""Numpy forward and reverse-mode rules for the spatial ONNX ops: Conv, pools, Pad, Resize.

Split out of :mod:`onnx_ops` (same rule signatures: ``forward(inputs, attrs)`` and
``backward(inputs, output, attrs, grad_out)``); convolutions are im2col over NCHW tensors, 1-D
convolutions and pools run as 2-D ones over a unit height. ``auto_pad`` and pooling ``ceil_mode``
follow onnxruntime. Pad and Resize move data along one axis at a time through index maps, so their
gradients are scatter-adds of the output gradient (:func:`scatter_axis`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]
Attrs = dict[str, Any]
Grads = list[Arr | None]


def astr(a: Attrs, key: str, default: str) -> str:
    """A string attribute (ONNX hands them over as bytes)."""
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def scatter_axis(g: Arr, axis: int, idx: Arr, n: int) -> Arr:
    """Adjoint of ``np.take(x, idx, axis)`` for an ``x`` of size ``n`` there (negative ``idx`` are dropped)."""
    gm = np.moveaxis(g, axis, 0)
    keep = np.flatnonzero(idx >= 0)
    order = keep[np.argsort(idx[keep], kind="stable")]
    out = np.zeros((n, *gm.shape[1:]), dtype=g.dtype)
    if len(order):
        sidx = idx[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sidx)) + 1]
        out[sidx[starts]] = np.add.reduceat(gm[order], starts, axis=0)
    return np.moveaxis(out, 0, axis)


def resolve_pads(a: Attrs, spatial: Sequence[int], k: Sequence[int], s: Sequence[int],
                  d: Sequence[int]) -> list[int]:
    """Explicit ``[begin..., end...]`` pads, computing ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID."""
    mode, nd = astr(a, "auto_pad", "NOTSET"), len(spatial)
    if mode in ("NOTSET", ""):
        return list(a.get("pads", [0] * (2 * nd)))
    if mode == "VALID":
        return [0] * (2 * nd)
    begin, end = [], []
    for n, kk, ss, dd in zip(spatial, k, s, d, strict=True):
        total = max((-(-n // ss) - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        begin.append(total // 2 if mode == "SAME_UPPER" else total - total // 2)
        end.append(total - begin[-1])
    return begin + end


def _lift(a: Attrs) -> Attrs:
    """1-D conv/pool attributes as 2-D ones over a unit height."""
    b = dict(a)
    for key in ("strides", "dilations", "kernel_shape"):
        if key in a:
            b[key] = [1, *a[key]]
    if "pads" in a:
        b["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
    return b


def _squeeze_grads(gs: Grads) -> Grads:
    return [None if t is None else t[:, :, 0] if t.ndim == 4 else t for t in gs]


def _win(s: list[int], d: list[int], i: int, j: int, ho: int, wo: int) -> tuple[slice, slice]:
    return (slice(i * d[0], i * d[0] + s[0] * (ho - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (wo - 1) + 1, s[1]))


def _out_size(xp: Arr, k: Sequence[int], s: list[int], d: list[int]) -> tuple[int, int]:
    return ((xp.shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1, (xp.shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1)


def _pad4(x: Arr, p: Sequence[int], fill: float = 0.0) -> Arr:
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=fill)


def _crop4(g: Arr, p: Sequence[int]) -> Arr:
    return g[:, :, p[0]:g.shape[2] - p[2], p[1]:g.shape[3] - p[3]]


def _conv_geom(x: Arr, k: tuple[int, int], a: Attrs) -> tuple[Arr, list[int], list[int], list[int], int, int]:
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    p = resolve_pads(a, x.shape[2:], k, strides, dil)
    xp = _pad4(x, p)
    ho, wo = _out_size(xp, k, strides, dil)
    return xp, strides, dil, p, ho, wo


def _cols(xp: Arr, kh: int, kw: int, s: list[int], d: list[int], ho: int, wo: int) -> Arr:
    """im2col: [N, C, kh*kw, Ho, Wo] (one matmul per conv is ~3x faster than a loop of einsums)."""
    return np.stack([xp[:, :, sh, sw] for ki in range(kh) for kj in range(kw)
                     for sh, sw in [_win(s, d, ki, kj, ho, wo)]], axis=2)


def conv_f(i: list[Arr], a: Attrs) -> Arr:
    x, w = i[0], i[1]
    if x.ndim == 3:
        return conv_f([x[:, :, None], w[:, :, None], *i[2:]], _lift(a))[:, :, 0]
    if x.ndim != 4:
        raise NotImplementedError("Conv other than 1-D and 2-D")
    groups = a.get("group", 1)
    o, cin, kh, kw = w.shape
    xp, s, d, _p, ho, wo = _conv_geom(x, (kh, kw), a)
    cols = _cols(xp, kh, kw, s, d, ho, wo)
    n, cout = x.shape[0], o // groups
    parts = [np.matmul(w[g * cout:(g + 1) * cout].reshape(cout, -1),
                       cols[:, g * cin:(g + 1) * cin].reshape(n, cin * kh * kw, ho * wo)) for g in range(groups)]
    out: Arr = np.concatenate(parts, axis=1).reshape(n, o, ho, wo)
    if len(i) > 2:
        out = out + i[2].reshape(1, -1, 1, 1)
    return out


def conv_b(i: list[Arr], o_: Arr, a: Attrs, g: Arr) -> Grads:
    x, w = i[0], i[1]
    if x.ndim == 3:
        return _squeeze_grads(conv_b([x[:, :, None], w[:, :, None], *i[2:]], o_[:, :, None], _lift(a), g[:, :, None]))
    groups = a.get("group", 1)
    o, cin, kh, kw = w.shape
    xp, s, d, p, ho, wo = _conv_geom(x, (kh, kw), a)
    cols = _cols(xp, kh, kw, s, d, ho, wo)
    n, cout = x.shape[0], o // groups
    gw, gcols = np.empty_like(w), np.empty_like(cols)
    for gi in range(groups):
        cg = cols[:, gi * cin:(gi + 1) * cin].reshape(n, cin * kh * kw, ho * wo)
        gg = g[:, gi * cout:(gi + 1) * cout].reshape(n, cout, ho * wo)
        wg = w[gi * cout:(gi + 1) * cout].reshape(cout, cin * kh * kw)
        gw[gi * cout:(gi + 1) * cout] = np.tensordot(gg, cg, axes=([0, 2], [0, 2])).reshape(cout, cin, kh, kw)
        gcols[:, gi * cin:(gi + 1) * cin] = np.matmul(wg.T, gg).reshape(n, cin, kh * kw, ho, wo)
    gxp = np.zeros_like(xp)
    for idx in range(kh * kw):
        sh, sw = _win(s, d, idx // kw, idx % kw, ho, wo)
        gxp[:, :, sh, sw] += gcols[:, :, idx]
    out: Grads = [_crop4(gxp, p), gw]
    if len(i) > 2:
        out.append(g.sum(axis=(0, 2, 3)))
    return out


@dataclass(frozen=True)
class _PoolGeom:
    k: list[int]
    s: list[int]
    d: list[int]
    p: list[int]  # the node's pads
    q: list[int]  # the pads actually applied: ``p`` plus the ceil_mode overhang at the end


def _pool_geom(x: Arr, a: Attrs) -> _PoolGeom:
    k, s, d = list(a["kernel_shape"]), list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    p = resolve_pads(a, x.shape[2:], k, s, d)
    q = list(p)
    if a.get("ceil_mode", 0):
        for ax in range(2):
            n, dk = x.shape[2 + ax] + p[ax] + p[ax + 2], d[ax] * (k[ax] - 1) + 1
            out = -(-(n - dk) // s[ax]) + 1
            if (out - 1) * s[ax] >= x.shape[2 + ax] + p[ax]:  # the last window must start inside
                out -= 1
            q[ax + 2] += max((out - 1) * s[ax] + dk - n, 0)
    return _PoolGeom(k, s, d, p, q)


def _views(xp: Arr, geo: _PoolGeom) -> tuple[list[Arr], int, int]:
    ho, wo = _out_size(xp, geo.k, geo.s, geo.d)
    return [xp[:, :, sh, sw] for ki in range(geo.k[0]) for kj in range(geo.k[1])
            for sh, sw in [_win(geo.s, geo.d, ki, kj, ho, wo)]], ho, wo


def _unpool(part: Callable[[int], Arr], xp: Arr, geo: _PoolGeom, ho: int, wo: int) -> Arr:
    """Scatter per-window-offset gradients ``part(offset)`` back onto the input."""
    gxp = np.zeros_like(xp)
    for idx in range(geo.k[0] * geo.k[1]):
        sh, sw = _win(geo.s, geo.d, idx // geo.k[1], idx % geo.k[1], ho, wo)
        gxp[:, :, sh, sw] += part(idx)
    return _crop4(gxp, geo.q)


def maxpool_f(i: list[Arr], a: Attrs) -> Arr:
    if i[0].ndim == 3:
        return maxpool_f([i[0][:, :, None]], _lift(a))[:, :, 0]
    geo = _pool_geom(i[0], a)
    return np.max(np.stack(_views(_pad4(i[0], geo.q, -np.inf), geo)[0]), axis=0)  # type: ignore[no-any-return]


def maxpool_b(i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    if i[0].ndim == 3:
        return _squeeze_grads(maxpool_b([i[0][:, :, None]], o[:, :, None], _lift(a), g[:, :, None]))
    geo = _pool_geom(i[0], a)
    xp = _pad4(i[0], geo.q, -np.inf)
    views, ho, wo = _views(xp, geo)
    arg = np.argmax(np.stack(views), axis=0)
    return [_unpool(lambda idx: np.where(arg == idx, g, 0.0), xp, geo, ho, wo)]


def _avg_counts(x: Arr, a: Attrs, geo: _PoolGeom) -> Arr:
    """Divisor per window: valid inputs, plus the node's pads with count_include_pad (never the overhang)."""
    h, w, p = x.shape[2], x.shape[3], geo.p
    mask = np.zeros((1, 1, h + geo.q[0] + geo.q[2], w + geo.q[1] + geo.q[3]), dtype=x.dtype)
    if a.get("count_include_pad", 0):
        mask[:, :, :h + p[0] + p[2], :w + p[1] + p[3]] = 1
    else:
        mask[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = 1
    return np.sum(np.stack(_views(mask, geo)[0]), axis=0)  # type: ignore[no-any-return]


def avgpool_f(i: list[Arr], a: Attrs) -> Arr:
    if i[0].ndim == 3:
        return avgpool_f([i[0][:, :, None]], _lift(a))[:, :, 0]
    geo = _pool_geom(i[0], a)
    return np.sum(np.stack(_views(_pad4(i[0], geo.q), geo)[0]), axis=0) / _avg_counts(i[0], a, geo)  # type: ignore[no-any-return]


def avgpool_b(i: list[Arr], o: Arr, a: Attrs, g: Arr) -> Grads:
    if i[0].ndim == 3:
        return _squeeze_grads(avgpool_b([i[0][:, :, None]], o[:, :, None], _lift(a), g[:, :, None]))
    geo = _pool_geom(i[0], a)
    xp = _pad4(i[0], geo.q)
    ho, wo = _out_size(xp, geo.k, geo.s, geo.d)
    gs = g / _avg_counts(i[0], a, geo)
    return [_unpool(lambda _idx: gs, xp, geo, ho, wo)]


def _spatial_axes(x: Arr) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def global_avgpool_f(i: list[Arr], _a: Attrs) -> Arr:
    return i[0].mean(axis=_spatial_axes(i[0]), keepdims=True)  # type: ignore[no-any-return]


def global_avgpool_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    x = i[0]
    return [np.broadcast_to(g, x.shape) / max(int(np.prod(x.shape[2:])), 1)]


def global_maxpool_f(i: list[Arr], _a: Attrs) -> Arr:
    return i[0].max(axis=_spatial_axes(i[0]), keepdims=True)  # type: ignore[no-any-return]


def global_maxpool_b(i: list[Arr], o: Arr, _a: Attrs, g: Arr) -> Grads:
    hit = i[0] == o
    return [np.where(hit, g / hit.sum(axis=_spatial_axes(i[0]), keepdims=True), 0.0).astype(g.dtype)]


# -- Pad ------------------------------------------------------------------------------------------

def _pad_spec(i: list[Arr], a: Attrs) -> tuple[list[tuple[int, int]], str, float]:
    """Per-axis (begin, end) pads, mode and fill, from inputs (opset >= 11) or attributes."""
    x, mode = i[0], astr(a, "mode", "constant")
    if len(i) > 1 and i[1].size:
        pads = [int(v) for v in i[1]]
        value = float(i[2].reshape(-1)[0]) if len(i) > 2 and i[2].size else 0.0
        axes = [int(v) % x.ndim for v in i[3]] if len(i) > 3 and i[3].size else list(range(x.ndim))
    else:
        pads, value, axes = list(a.get("pads", [])), float(a.get("value", 0.0)), list(range(x.ndim))
    per = [(0, 0)] * x.ndim
    for j, ax in enumerate(axes):
        per[ax] = (pads[j], pads[j + len(axes)])
    return per, mode, value


def _pad_index(n: int, before: int, after: int, mode: str) -> Arr:
    """Source index of every output position along one axis (-1: the constant fill)."""
    base = np.arange(n)[max(-before, 0): n - max(-after, 0)]
    widths = (max(before, 0), max(after, 0))
    if mode == "constant":
        return np.pad(base, widths, constant_values=-1)
    return np.pad(base, widths, mode=mode)  # type: ignore[call-overload,no-any-return]


def _pad_plan(i: list[Arr], a: Attrs) -> tuple[list[tuple[int, int, Arr]], float]:
    per, mode, value = _pad_spec(i, a)
    return [(ax, i[0].shape[ax], _pad_index(i[0].shape[ax], b, e, mode))
            for ax, (b, e) in enumerate(per) if b or e], value


def pad_f(i: list[Arr], a: Attrs) -> Arr:
    plan, value = _pad_plan(i, a)
    out = i[0]
    for ax, _n, idx in plan:
        out = np.take(out, np.maximum(idx, 0), axis=ax)
        if (idx < 0).any():
            sel: list[Any] = [slice(None)] * out.ndim
            sel[ax] = idx < 0
            out[tuple(sel)] = value
    return out


def pad_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    for ax, n, idx in reversed(_pad_plan(i, a)[0]):
        g = scatter_axis(g, ax, idx, n)
    return [g] + [None] * (len(i) - 1)


# -- Resize / Upsample ----------------------------------------------------------------------------

_Plan = list[tuple[int, int, Arr, Arr, Arr | None]]  # axis, input size, first/second source, weight

_COORDS: dict[str, Callable[[Arr, float, int, int], Arr]] = {
    "half_pixel": lambda y, s, n, m: (y + 0.5) / s - 0.5,
    "pytorch_half_pixel": lambda y, s, n, m: (y + 0.5) / s - 0.5 if m > 1 else 0.0 * y,
    "align_corners": lambda y, s, n, m: y * (n - 1) / (m - 1) if m > 1 else 0.0 * y,
    "asymmetric": lambda y, s, n, m: y / s,
    "tf_half_pixel_for_nn": lambda y, s, n, m: (y + 0.5) / s,
}
RESIZE_COORDS = frozenset(_COORDS)

_ROUND: dict[str, Callable[[Arr, float], Arr]] = {
    "round_prefer_floor": lambda c, s: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c, s: np.floor(c + 0.5),
    "floor": lambda c, s: np.floor(c),
    "ceil": lambda c, s: np.ceil(c),
    "simple": lambda c, s: np.floor(c) if s >= 1 else np.ceil(c),  # opset < 11 (onnxruntime)
}
RESIZE_ROUNDING = frozenset(_ROUND) - {"simple"}


def _resize_sizes(i: list[Arr], a: Attrs, legacy: bool) -> list[tuple[int, int, int, float]]:
    """(axis, input size, output size, scale) for every axis that changes."""
    x = i[0]
    if legacy:  # Upsample, Resize-10: X, scales (Upsample-7: a scales attribute)
        scales: list[float] | None = [float(v) for v in (i[1] if len(i) > 1 else a["scales"])]
        sizes = None
    else:
        scales = [float(v) for v in i[2]] if len(i) > 2 and i[2].size else None
        sizes = [int(v) for v in i[3]] if len(i) > 3 and i[3].size else None
    out = []
    for j, ax in enumerate(int(v) % x.ndim for v in a.get("axes", range(x.ndim))):
        n = x.shape[ax]
        m = sizes[j] if sizes is not None else int(np.floor(n * np.float32(scales[j])))  # type: ignore[index]
        s = m / n if sizes is not None else scales[j]  # type: ignore[index]
        if m != n or s != 1.0:
            out.append((ax, n, m, s))
    return out


def _resize_plan(i: list[Arr], a: Attrs, legacy: bool) -> _Plan:
    mode = astr(a, "mode", "nearest")
    coord = "asymmetric" if legacy else astr(a, "coordinate_transformation_mode", "half_pixel")
    rounding = "simple" if legacy else astr(a, "nearest_mode", "round_prefer_floor")
    plan: _Plan = []
    for ax, n, m, s in _resize_sizes(i, a, legacy):
        c = _COORDS[coord](np.arange(m, dtype=np.float64), s, n, m)
        if mode == "nearest":
            idx = np.clip(_ROUND[rounding](c, s), 0, n - 1).astype(np.int64)
            plan.append((ax, n, idx, idx, None))
            continue
        c = np.clip(c, 0, n - 1)
        i0 = np.floor(c).astype(np.int64)
        plan.append((ax, n, i0, np.minimum(i0 + 1, n - 1), c - i0))
    return plan


def _along(w: Arr, ax: int, ndim: int, dtype: Any) -> Arr:
    return w.reshape([-1 if k == ax else 1 for k in range(ndim)]).astype(dtype)


def _resize_f(i: list[Arr], a: Attrs, legacy: bool) -> Arr:
    x = i[0]
    for ax, _n, i0, i1, w in _resize_plan(i, a, legacy):
        lo = np.take(x, i0, axis=ax)
        x = lo if w is None else lo + (np.take(x, i1, axis=ax) - lo) * _along(w, ax, x.ndim, x.dtype)
    return x


def _resize_b(i: list[Arr], a: Attrs, legacy: bool, g: Arr) -> Grads:
    for ax, n, i0, i1, w in reversed(_resize_plan(i, a, legacy)):
        if w is None:
            g = scatter_axis(g, ax, i0, n)
        else:
            wr = _along(w, ax, g.ndim, g.dtype)
            g = scatter_axis(g * (1 - wr), ax, i0, n) + scatter_axis(g * wr, ax, i1, n)
    return [g] + [None] * (len(i) - 1)


def _legacy(i: list[Arr], a: Attrs) -> bool:
    return bool(a.get("_opset", 11) < 11)


def resize_f(i: list[Arr], a: Attrs) -> Arr:
    return _resize_f(i, a, _legacy(i, a))


def resize_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    return _resize_b(i, a, _legacy(i, a), g)


def upsample_f(i: list[Arr], a: Attrs) -> Arr:
    return _resize_f(i, a, True)


def upsample_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    return _resize_b(i, a, True, g)
