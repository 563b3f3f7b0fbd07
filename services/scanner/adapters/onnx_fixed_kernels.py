"""Kernels for the layers of a graph whose weights stay fixed (a scan, not training): convolutions and
pooling on onnxruntime, inference-mode BatchNormalization as one affine map; input gradients only.

Why: on a 2-core machine the numpy tape's im2col convolutions run at about 3 GMAC/s, onnxruntime's
at about 35 (one thread, a [320, 16, 32, 32] 3x3 convolution: 39 ms against 297 ms forward, 34 ms
against 655 ms for the gradient). Trigger reverse engineering only needs the gradient with respect
to the *input*, and for a convolution that is a transposed convolution with the same weights, which
onnxruntime also runs natively. So when the weights are constants of the graph, each Conv node gets
two one-node sessions: the Conv itself for the forward pass and a ConvTranspose (strides, dilations,
groups and resolved pads of the Conv; ``output_padding`` restoring the rows a stride leaves unused)
for the input gradient. The weight and bias gradients are not computed at all.

A 2-D MaxPool runs on onnxruntime too; its gradient goes to the input element each window took, which
onnxruntime's Indices output names (a scatter-add by ``np.bincount``, not the tape's per-offset
masks); an AveragePool whose windows all divide by their full size is a depthwise convolution with a
constant kernel and gets a transposed convolution for its gradient. On a digit CNN with max pooling a
gradient step went from 61 to 36 ms with the pooling kernel. An inference-mode BatchNormalization with
constant statistics is one per-channel affine map: its input gradient is the output gradient times the
map's scale (the tape's rule also computes the scale and bias gradients, a third of a residual net's
backward time once its convolutions are fast).

Everything else stays on the numpy tape, so the graph is still differentiated exactly; a Conv or a
BatchNormalization whose weights are computed inside the graph, or a Conv of more than two spatial
dimensions, stays on numpy too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_spatial_ops import resolve_pads
from services.scanner.adapters.ort_options import session_options

Arr = np.ndarray[Any, Any]
_ATTRS = ("strides", "dilations", "group")


def _session(node: Any, weights: dict[str, Arr], rank: int, threads: int = 1,
             outputs: Sequence[tuple[str, int]] = (("y", TensorProto.FLOAT),)) -> ort.InferenceSession:
    """A one-node session: input ``x`` of ``rank`` dimensions, ``weights`` as initializers."""
    dims: list[int | str | None] = ["N", *[None] * (rank - 1)]
    graph = helper.make_graph(
        [node], "kernel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs],
        [numpy_helper.from_array(np.ascontiguousarray(v, np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])


class FrozenConv:
    """Forward pass and input gradient of one Conv node with constant weight (and bias)."""

    def __init__(self, attrs: dict[str, Any], weight: Arr, bias: Arr | None, threads: int = 1) -> None:
        self.attrs, self.weight, self.bias, self.threads = attrs, weight, bias, threads
        self._forward: ort.InferenceSession | None = None
        self._backward: dict[tuple[int, ...], ort.InferenceSession] = {}

    def _kept(self) -> dict[str, Any]:
        return {k: self.attrs[k] for k in _ATTRS if k in self.attrs}

    def forward(self, x: Arr) -> Arr:
        if self._forward is None:
            weights = {"w": self.weight, **({} if self.bias is None else {"b": self.bias})}
            pads = {k: self.attrs[k] for k in ("pads", "auto_pad") if k in self.attrs}
            node = helper.make_node("Conv", ["x", *weights], ["y"], **self._kept(), **pads)
            self._forward = _session(node, weights, x.ndim, self.threads)
        out: Arr = self._forward.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]
        return out

    def input_grad(self, x: Arr, g: Arr) -> Arr:
        """d loss / d input at input ``x`` given d loss / d output ``g``."""
        x_shape = tuple(x.shape)
        session = self._backward.get(x_shape)
        if session is None:
            session = self._backward[x_shape] = self._transpose(x_shape, g.shape)
        out: Arr = session.run(None, {"x": np.ascontiguousarray(g, np.float32)})[0]
        return out

    def _transpose(self, x_shape: Sequence[int], g_shape: Sequence[int]) -> ort.InferenceSession:
        spatial, k = list(x_shape[2:]), list(self.weight.shape[2:])
        nd = len(spatial)
        s = list(self.attrs.get("strides", [1] * nd))
        d = list(self.attrs.get("dilations", [1] * nd))
        p = resolve_pads(self.attrs, spatial, k, s, d)
        # rows past the last window (input + pads - reach not a multiple of the stride) get no gradient
        extra = [spatial[i] - (s[i] * (g_shape[2 + i] - 1) + d[i] * (k[i] - 1) + 1 - p[i] - p[nd + i])
                 for i in range(nd)]
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **self._kept(), pads=p, output_padding=extra)
        return _session(node, {"w": self.weight}, len(x_shape), self.threads)


class FrozenAffine:
    """Inference-mode BatchNormalization with constant scale, bias, mean and variance."""

    def __init__(self, attrs: dict[str, Any], scale: Arr, bias: Arr, mean: Arr, var: Arr) -> None:
        inv = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(attrs.get("epsilon", 1e-5)))
        self.scale = inv.astype(np.float32)
        self.shift = (bias - mean * inv).astype(np.float32)

    def _shaped(self, v: Arr, ndim: int) -> Arr:
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x: Arr) -> Arr:
        out: Arr = x * self._shaped(self.scale, x.ndim) + self._shaped(self.shift, x.ndim)
        return out

    def input_grad(self, x: Arr, g: Arr) -> Arr:
        out: Arr = g * self._shaped(self.scale, g.ndim)
        return out


class FrozenMaxPool:
    """2-D MaxPool on onnxruntime; its input gradient routes each output gradient to the input element
    the window took, found from the Indices output (flat positions in the unpadded input)."""

    def __init__(self, attrs: dict[str, Any], threads: int = 1) -> None:
        kept = ("kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations")
        node = helper.make_node("MaxPool", ["x"], ["y", "idx"], **{k: attrs[k] for k in kept if k in attrs})
        self._session = _session(node, {}, 4, threads, (("y", TensorProto.FLOAT), ("idx", TensorProto.INT64)))

    def _run(self, x: Arr, outputs: list[str]) -> list[Arr]:
        got: list[Arr] = self._session.run(outputs, {"x": np.ascontiguousarray(x, np.float32)})
        return got

    def forward(self, x: Arr) -> Arr:
        return self._run(x, ["y"])[0]

    def input_grad(self, x: Arr, g: Arr) -> Arr:
        idx = self._run(x, ["idx"])[0]  # one more pooling pass: cheaper than keeping indices per call
        flat = np.bincount(idx.ravel(), weights=g.ravel().astype(np.float64), minlength=x.size)
        out: Arr = flat.reshape(x.shape).astype(np.float32)
        return out


class FrozenAveragePool:
    """2-D AveragePool on onnxruntime whose every window divides by its full size (no padding, or
    ``count_include_pad``; no ``ceil_mode``): then it is a depthwise convolution with a constant kernel,
    and its input gradient the transposed convolution, as for :class:`FrozenConv`."""

    def __init__(self, attrs: dict[str, Any], threads: int = 1) -> None:
        self.attrs, self.threads = attrs, threads
        self._forward: ort.InferenceSession | None = None
        self._backward: dict[tuple[int, ...], FrozenConv] = {}

    def forward(self, x: Arr) -> Arr:
        if self._forward is None:
            kept = ("kernel_shape", "strides", "pads", "auto_pad", "count_include_pad")
            node = helper.make_node("AveragePool", ["x"], ["y"], **{k: self.attrs[k] for k in kept if k in self.attrs})
            self._forward = _session(node, {}, x.ndim, self.threads)
        out: Arr = self._forward.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]
        return out

    def input_grad(self, x: Arr, g: Arr) -> Arr:
        conv = self._backward.get(tuple(x.shape))
        if conv is None:
            kh, kw = self.attrs["kernel_shape"]
            channels = x.shape[1]
            weight = np.full((channels, 1, kh, kw), 1.0 / (kh * kw), np.float32)
            attrs: dict[str, Any] = {k: self.attrs[k] for k in ("strides", "pads", "auto_pad") if k in self.attrs}
            attrs["group"] = channels
            conv = self._backward[tuple(x.shape)] = FrozenConv(attrs, weight, None, self.threads)
        return conv.input_grad(x, g)


Kernel = FrozenConv | FrozenAffine | FrozenMaxPool | FrozenAveragePool


def _average_pool(n: Any, threads: int) -> FrozenAveragePool | None:
    """A kernel for a 2-D AveragePool that is a depthwise convolution (see :class:`FrozenAveragePool`)."""
    a = n.attrs
    mode = a.get("auto_pad", "NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    padded = mode in ("SAME_UPPER", "SAME_LOWER") or any(a.get("pads", [0]))
    if (len(a.get("kernel_shape", [])) != 2 or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1]))
            or (padded and not a.get("count_include_pad", 0))):
        return None
    return FrozenAveragePool(a, threads)


def _maxpool(n: Any, threads: int) -> FrozenMaxPool | None:
    """A kernel for a 2-D MaxPool whose Indices output the graph does not use (row-major indices)."""
    if len(n.attrs.get("kernel_shape", [])) != 2 or n.attrs.get("storage_order", 0) or n.attrs.get("_n_out", 1) > 1:
        return None
    return FrozenMaxPool(n.attrs, threads)


def _affine(n: Any, params: dict[str, Arr]) -> FrozenAffine | None:
    """A kernel for an inference-mode BatchNormalization (one output) whose statistics are constants."""
    names = n.inputs[1:5]
    if (len(names) < 4 or any(k not in params for k in names) or n.attrs.get("training_mode", 0)
            or n.attrs.get("_n_out", 1) > 1):
        return None
    return FrozenAffine(n.attrs, *(params[k].astype(np.float32) for k in names))


def fixed_kernels(nodes: Sequence[Any], params: dict[str, Arr], threads: int = 1) -> dict[int, Kernel]:
    """Kernels for the nodes (by position in ``nodes``) that have them: Conv nodes whose weight and
    bias are graph constants and that have one or two spatial dimensions, inference-mode
    BatchNormalization nodes with constant statistics, 2-D MaxPool nodes with one output and 2-D
    AveragePool nodes that are depthwise convolutions."""
    out: dict[int, Kernel] = {}
    for i, n in enumerate(nodes):
        if n.op == "BatchNormalization" and (affine := _affine(n, params)) is not None:
            out[i] = affine
        if n.op == "MaxPool" and (pool := _maxpool(n, threads)) is not None:
            out[i] = pool
        if n.op == "AveragePool" and (mean := _average_pool(n, threads)) is not None:
            out[i] = mean
        if n.op != "Conv" or len(n.inputs) < 2 or n.inputs[1] not in params:
            continue
        bias = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        weight = params[n.inputs[1]]
        if weight.ndim not in (3, 4) or weight.dtype != np.float32 or (bias is not None and bias not in params):
            continue
        out[i] = FrozenConv(n.attrs, weight, None if bias is None else params[bias], threads)
    return out
