"""Integer matrix products run by onnxruntime's own kernels in the tape's forward pass.

onnxruntime's uint8 x int8 products (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, QGemm) run
on x86 CPUs without VNNI through an instruction that adds two neighbouring products into a saturating
16-bit integer: a pair of products beyond +-32767 is clipped before the 32-bit accumulation. Measured on an
AVX2 AMD EPYC: a [8, 64] x [64, 16] MatMulInteger of random uint8 and int8 values was off the exact sum by
up to 35,057, and matched to the unit the exact sum with each neighbouring pair clipped to int16. On CPUs
with VNNI the same kernels are exact. The numpy rules (:mod:`onnx_quant_ops`) compute the exact sum, so on
such a CPU a quantized model's tape disagreed with onnxruntime by 5% of its logits, the tape check failed
and the scan fell back to estimated gradients.

So when the tape serves a scan (fixed weights), these nodes' *forward* values come from a one-node
onnxruntime session holding the node's constant inputs: the tape then computes exactly what onnxruntime
computes for the model on this machine, whatever the CPU. Their gradients stay the numpy rules' straight-
through estimate, which the rounding makes an estimate anyway (see :mod:`onnx_quant_ops`).

The same saturation hides in QDQ graphs: onnxruntime's extended optimisations fuse DequantizeLinear ->
MatMul / Conv -> QuantizeLinear into those integer kernels. The scanner's session runs graphs with
QuantizeLinear or DequantizeLinear nodes at the basic optimisation level, as written (float products between
the quantizers), so a QDQ model gives the same verdict on every machine (:mod:`onnx_model`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

from services.scanner.adapters.ort_options import session_options

Arr = np.ndarray[Any, Any]
NATIVE_OPS = frozenset({"MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "QGemm"})
# (data input, its zero point) per op: the tape may hold an integer tensor as float32 (a MaxPool run on
# onnxruntime in float between two QLinear ops), and the kernel wants the zero point's type back
_ZERO_POINTS = {"MatMulInteger": ((0, 2), (1, 3)), "ConvInteger": ((0, 2), (1, 3)),
                "QLinearMatMul": ((0, 2), (3, 5)), "QLinearConv": ((0, 2), (3, 5)), "QGemm": ((0, 2), (3, 5))}


class NativeNode:
    """One node of the tape computed by onnxruntime, constant inputs folded in as initializers."""

    def __init__(self, op: str, inputs: tuple[str, ...], attrs: dict[str, Any], domain: str,
                 params: dict[str, Arr], threads: int = 1) -> None:
        self.op, self.inputs, self.domain, self.threads = op, inputs, domain, threads
        self.opset = int(attrs.get("_opset", 1))
        self.attrs = {k: v for k, v in attrs.items() if not k.startswith("_")}
        self.constants = {k: params[k] for k in inputs if k and k in params}
        self.names = {k: f"in{i}" for i, k in enumerate(dict.fromkeys(k for k in inputs if k))}
        self._sessions: dict[tuple[tuple[str, int], ...], ort.InferenceSession] = {}

    def _dynamic(self) -> list[str]:
        return [k for k in self.names if k not in self.constants]

    def _session(self, values: dict[str, Arr]) -> ort.InferenceSession:
        key = tuple((str(values[k].dtype), values[k].ndim) for k in self._dynamic())
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._build(values)
        return session

    def _build(self, values: dict[str, Arr]) -> ort.InferenceSession:
        names = self.names
        node = helper.make_node(self.op, [names.get(k, "") for k in self.inputs], ["y"], domain=self.domain or None,
                                **self.attrs)
        graph_inputs = [helper.make_tensor_value_info(names[k], helper.np_dtype_to_tensor_dtype(values[k].dtype),
                                                      [None] * values[k].ndim) for k in self._dynamic()]
        inits = [numpy_helper.from_array(np.ascontiguousarray(v), names[k]) for k, v in self.constants.items()]
        graph = helper.make_graph([node], "native", graph_inputs, [helper.make_empty_tensor_value_info("y")], inits)
        opsets = [helper.make_opsetid("", max(self.opset, 13) if self.domain else self.opset)]
        if self.domain:
            opsets.append(helper.make_opsetid(self.domain, self.opset))
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return ort.InferenceSession(model.SerializeToString(), session_options(self.threads),
                                    providers=["CPUExecutionProvider"])

    def _typed(self, ins: list[Arr]) -> list[Arr]:
        out = list(ins)
        for data, zp in _ZERO_POINTS[self.op]:
            if data < len(out) and out[data].dtype.kind == "f":
                kind = out[zp].dtype if zp < len(out) and out[zp].size else np.dtype(np.uint8)
                out[data] = out[data].astype(kind)
        return out

    def __call__(self, ins: list[Arr]) -> Arr:
        values = dict(zip(self.inputs, self._typed(ins), strict=False))
        feed = {self.names[k]: np.ascontiguousarray(values[k]) for k in self._dynamic()}
        out: Arr = self._session(values).run(None, feed)[0]
        return out


def native_nodes(nodes: list[Any], params: dict[str, Arr], threads: int = 1) -> dict[int, NativeNode]:
    """onnxruntime forward passes for the integer-product nodes of ``nodes`` (by position)."""
    return {i: NativeNode(n.op, n.inputs, n.attrs, n.domain, params, threads) for i, n in enumerate(nodes)
            if n.op in NATIVE_OPS and n.attrs.get("_n_out", 1) == 1}
