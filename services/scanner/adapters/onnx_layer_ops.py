"""Numpy rules for ConvTranspose (decoder-style and upsampling classifiers, segmentation heads).

A transposed convolution is the adjoint of a convolution with the same weight, strides, pads,
dilations and groups: its forward pass is :func:`conv_b`'s input gradient and its input gradient is
:func:`conv_f`, so it shares the im2col code of :mod:`onnx_spatial_ops` (1-D and 2-D).
``output_padding`` only lengthens the output (the extra rows get the bias alone); an explicit
``output_shape`` or an ``auto_pad`` other than NOTSET is refused at load (:data:`LAYER_CHECKS`), so
the tape never computes it differently from onnxruntime.
"""

from __future__ import annotations

import numpy as np

from services.scanner.adapters.onnx_ops import Arr, Attrs, Backward, Forward, Grads
from services.scanner.adapters.onnx_spatial_ops import astr, conv_b, conv_f


def _geometry(x: Arr, w: Arr, a: Attrs) -> tuple[tuple[int, ...], Attrs]:
    """Output shape of the transposed convolution and the attributes of the convolution it is the adjoint of."""
    nd, group = x.ndim - 2, int(a.get("group", 1))
    s, d = list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd))
    p, extra = list(a.get("pads", [0] * (2 * nd))), list(a.get("output_padding", [0] * nd))
    size = [s[k] * (x.shape[2 + k] - 1) + extra[k] + (w.shape[2 + k] - 1) * d[k] + 1 - p[k] - p[nd + k]
            for k in range(nd)]
    return (x.shape[0], w.shape[1] * group, *size), {"strides": s, "dilations": d, "pads": p, "group": group}


def _bias(y: Arr, i: list[Arr]) -> Arr:
    if len(i) < 3 or not i[2].size:
        return y
    out: Arr = y + i[2].reshape(1, -1, *[1] * (y.ndim - 2))
    return out


def _conv_transpose_f(i: list[Arr], a: Attrs) -> Arr:
    x, w = i[0], i[1]
    shape, conv = _geometry(x, w, a)
    grads = conv_b([np.zeros(shape, x.dtype), w], x, conv, x)
    assert grads[0] is not None
    return _bias(grads[0], i)


def _conv_transpose_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    x, w = i[0], i[1]
    _shape, conv = _geometry(x, w, a)
    gw = conv_b([g, w], x, conv, x)[1]  # <y, g> = <x, conv(g, w)>: the weight gradient of that convolution
    out: Grads = [conv_f([g, w], conv), gw]
    if len(i) > 2 and i[2].size:
        out.append(g.sum(axis=(0, *range(2, g.ndim))))
    return out


def _conv_transpose_check(a: Attrs) -> str | None:
    if "output_shape" in a:
        return "ConvTranspose output_shape"
    mode = astr(a, "auto_pad", "NOTSET")
    return None if mode in ("NOTSET", "") else f"ConvTranspose auto_pad={mode}"


LAYER_CHECKS = {"ConvTranspose": _conv_transpose_check}
LAYER_RULES: dict[str, tuple[Forward, Backward]] = {"ConvTranspose": (_conv_transpose_f, _conv_transpose_b)}
