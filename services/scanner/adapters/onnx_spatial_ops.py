"""Numpy forward and reverse-mode rules for the spatial ONNX ops: Conv, MaxPool, AveragePool.

Split out of :mod:`onnx_ops` (same rule signatures: ``forward(inputs, attrs)`` and
``backward(inputs, output, attrs, grad_out)``); convolutions are im2col over NCHW tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]
Attrs = dict[str, Any]
Grads = list[Arr | None]


def _pads(a: Attrs, nd: int) -> list[int]:
    return list(a.get("pads", [0] * (2 * nd)))


def _conv_geom(x: Arr, k: tuple[int, int], a: Attrs) -> tuple[Arr, list[int], list[int], list[int], int, int]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("auto_pad")
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    p = _pads(a, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    ho = (xp.shape[2] - dil[0] * (k[0] - 1) - 1) // strides[0] + 1
    wo = (xp.shape[3] - dil[1] * (k[1] - 1) - 1) // strides[1] + 1
    return xp, strides, dil, p, ho, wo


def _win(s: list[int], d: list[int], i: int, j: int, ho: int, wo: int) -> tuple[slice, slice]:
    return (slice(i * d[0], i * d[0] + s[0] * (ho - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (wo - 1) + 1, s[1]))


def _cols(xp: Arr, kh: int, kw: int, s: list[int], d: list[int], ho: int, wo: int) -> Arr:
    """im2col: [N, C, kh*kw, Ho, Wo] (one matmul per conv is ~3x faster than a loop of einsums)."""
    return np.stack([xp[:, :, sh, sw] for ki in range(kh) for kj in range(kw)
                     for sh, sw in [_win(s, d, ki, kj, ho, wo)]], axis=2)


def conv_f(i: list[Arr], a: Attrs) -> Arr:
    x, w = i[0], i[1]
    if x.ndim != 4:
        raise NotImplementedError("Conv other than 2-D")
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


def conv_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, w = i[0], i[1]
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
    out: Grads = [gxp[:, :, p[0]:gxp.shape[2] - p[2], p[1]:gxp.shape[3] - p[3]], gw]
    if len(i) > 2:
        out.append(g.sum(axis=(0, 2, 3)))
    return out


def _pool_windows(x: Arr, a: Attrs, fill: float) -> tuple[list[Arr], Arr, list[int], int, int, list[int]]:
    k = list(a["kernel_shape"])
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    p = _pads(a, 2)
    if a.get("ceil_mode", 0):
        raise NotImplementedError("ceil_mode")
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=fill)
    ho = (xp.shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (xp.shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    views = [xp[:, :, sh, sw] for ki in range(k[0]) for kj in range(k[1])
             for sh, sw in [_win(s, d, ki, kj, ho, wo)]]
    return views, xp, k, ho, wo, p


def maxpool_f(i: list[Arr], a: Attrs) -> Arr:
    views = _pool_windows(i[0], a, -np.inf)[0]
    return np.max(np.stack(views), axis=0)  # type: ignore[no-any-return]


def maxpool_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    views, xp, k, ho, wo, p = _pool_windows(i[0], a, -np.inf)
    arg = np.argmax(np.stack(views), axis=0)
    s, d = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    gxp = np.zeros_like(xp)
    for idx in range(k[0] * k[1]):
        sh, sw = _win(s, d, idx // k[1], idx % k[1], ho, wo)
        gxp[:, :, sh, sw] += np.where(arg == idx, g, 0.0)
    return [gxp[:, :, p[0]:gxp.shape[2] - p[2], p[1]:gxp.shape[3] - p[3]]]


def _avg_counts(x: Arr, a: Attrs) -> Arr:
    if a.get("count_include_pad", 0):
        return np.asarray(float(np.prod(a["kernel_shape"])))
    ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    return np.sum(np.stack(_pool_windows(ones, a, 0.0)[0]), axis=0)  # type: ignore[no-any-return]


def avgpool_f(i: list[Arr], a: Attrs) -> Arr:
    return np.sum(np.stack(_pool_windows(i[0], a, 0.0)[0]), axis=0) / _avg_counts(i[0], a)  # type: ignore[no-any-return]


def avgpool_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    _v, xp, k, ho, wo, p = _pool_windows(i[0], a, 0.0)
    s, d = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    gs = g / _avg_counts(i[0], a)
    gxp = np.zeros_like(xp)
    for idx in range(k[0] * k[1]):
        sh, sw = _win(s, d, idx // k[1], idx % k[1], ho, wo)
        gxp[:, :, sh, sw] += gs
    return [gxp[:, :, p[0]:gxp.shape[2] - p[2], p[1]:gxp.shape[3] - p[3]]]
