"""A small numpy interpreter for ONNX graphs with reverse-mode gradients.

Why: trigger reverse engineering (Neural Cleanse, MM-BD) needs input gradients and the default
install has no torch. Converting ONNX to a framework is heavy and lossy; a numpy tape over the
op subset that small classifiers use gives exact gradients with no new dependency. Graphs with
other ops raise :class:`UnsupportedGraph` at load and the caller falls back to a gradient-free
estimate. The same tape also returns parameter gradients, which the benchmark zoo uses to train.
Rules live in :mod:`onnx_ops` (core subset), :mod:`onnx_spatial_ops` and :mod:`onnx_extra_ops`
(the rest, the ``ai.onnx.ml`` ops scikit-learn exports, and the ops with several outputs), and
:mod:`onnx_quant_ops` (quantized graphs, with straight-through gradients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from services.scanner.adapters.onnx_extra_ops import CHECKS, EXTRA_RULES, MULTI_RULES
from services.scanner.adapters.onnx_fixed_kernels import fixed_kernels
from services.scanner.adapters.onnx_native_ops import native_nodes
from services.scanner.adapters.onnx_ops import RULES as CORE_RULES
from services.scanner.adapters.onnx_ops import Arr, Backward, Forward
from services.scanner.adapters.onnx_quant_ops import CONTRIB_OPS, fold_dequantized_weights

RULES: dict[str, tuple[Forward, Backward]] = {**CORE_RULES, **EXTRA_RULES}
_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}  # a custom domain's op may share a standard op's name
_CONTRIB = {("com.microsoft", op) for op in CONTRIB_OPS}  # onnxruntime's own ops with rules here
_EMPTY = np.zeros(0, np.float32)  # an omitted optional input


class UnsupportedGraph(ValueError):
    """The graph uses an operator the interpreter does not implement."""


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    domain: str = ""


def _attr_value(a: onnx.AttributeProto) -> Any:
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    return onnx.helper.get_attribute_value(a)


_CONSTANT_KINDS: dict[str, Any] = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                                   "value_ints": np.int64, "value_string": None, "value_strings": None}


_FLOAT32_OR_NARROWER = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def _constant_value(attrs: dict[str, Any]) -> Arr:
    """The tensor of a Constant node, whichever of its value attributes carries it (half precision widened)."""
    if "value" in attrs:
        value = np.asarray(attrs["value"])
        return value.astype(np.float32) if value.dtype == np.float16 else value
    for key, dtype in _CONSTANT_KINDS.items():
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise UnsupportedGraph(f"Constant without a dense value ({', '.join(sorted(attrs)) or 'no attributes'})")


_FLOAT_CASTS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _head(nodes: list[_Node], output: str) -> _Node | None:
    """The node that computes ``output``, looking through value-preserving ops after it: exporters end
    graphs with ``Softmax -> Identity`` (skl2onnx's MLPClassifier, tf2onnx), an inference-time Dropout or
    a Cast between float types, and the final Softmax (or Sigmoid) is what the tape must see to strip it."""
    by_output = {o: n for n in nodes for o in n.outputs if o}
    node = by_output.get(output)
    while node is not None and (node.op in ("Identity", "Dropout") or (
            node.op == "Cast" and node.attrs.get("to") in _FLOAT_CASTS)):
        node = by_output.get(node.inputs[0])
    return node


def _exp_of_log_softmax(nodes: list[_Node], node: _Node) -> bool:
    """Whether ``node`` is ``Exp`` of log-probabilities: of a LogSoftmax, or of ``x - ReduceLogSumExp(x)`` as skl2onnx
    ends GaussianNB. Its input then serves as logits (a softmax of log-probabilities gives them back) without the
    float32 saturation of the probabilities: a naive Bayes model's are exactly 0 or 1 away from its data, and read
    off them every class but one was out of reach and the trigger search's index came out at 16,572."""
    if node.op != "Exp":
        return False
    by_output = {o: n for n in nodes for o in n.outputs if o}
    src = by_output.get(node.inputs[0])
    if src is None or src.op not in ("LogSoftmax", "Sub"):
        return False
    if src.op == "LogSoftmax":
        return True
    norm = by_output.get(src.inputs[1])
    while norm is not None and norm.op in ("Reshape", "Unsqueeze", "Identity", "Expand"):
        norm = by_output.get(norm.inputs[0])
    return norm is not None and norm.op == "ReduceLogSumExp" and norm.inputs[0] == src.inputs[0]


def _make_node(n: onnx.NodeProto, opsets: dict[str, int]) -> _Node:
    attrs = {a.name: _attr_value(a) for a in n.attribute}
    if n.op_type == "Constant":
        attrs = {"value": _constant_value(attrs)}
    attrs["_opset"], attrs["_n_out"] = opsets.get(n.domain or "", 1), len(n.output)
    return _Node(n.op_type, tuple(n.input), tuple(n.output), attrs, n.domain)


def _refusals(nodes: list[_Node], output: str) -> list[str]:
    """Why the tape cannot run these nodes exactly: unknown ops or domains, settings, extra outputs."""
    consumed = {k for n in nodes for k in n.inputs} | {output}
    bad = {f"{n.op} (domain {n.domain})" for n in nodes
           if n.domain not in _DOMAINS and (n.domain, n.op) not in _CONTRIB}
    bad |= {n.op for n in nodes if n.op not in RULES and n.op not in MULTI_RULES and n.op != "Constant"
            and n.domain in _DOMAINS}
    bad |= {r for n in nodes if n.op in CHECKS and (r := CHECKS[n.op](n.attrs)) is not None}
    bad |= {f"{n.op} output {k!r} (only the first output is supported)" for n in nodes
            if n.op in RULES for k in n.outputs[1:] if k and k in consumed}
    return sorted(bad)


class GraphTape:
    """Forward and backward over one ONNX graph.

    Args:
        model: The ONNX model.
        output: Name of the graph output to differentiate; the first output when ``None``.
        strip_softmax: When the output is produced by a final Softmax, differentiate its input
            (the logits) instead, which is what attacks and margins want.
        fixed_weights: The graph's own weights never change and only input gradients are wanted
            (a scan): convolutions with constant weights then run on onnxruntime
            (:mod:`onnx_fixed_kernels`) and their weight gradients are skipped. ``forward`` must then
            be called without ``params``.
        threads: Intra-op threads of those onnxruntime kernels (:mod:`ort_options`).
    """

    def __init__(self, model: onnx.ModelProto, output: str | None = None, strip_softmax: bool = True,
                 fixed_weights: bool = False, strip_sigmoid: bool = False, threads: int = 1) -> None:
        g = model.graph
        # half-precision weights are widened: the tape computes in float32 (onnxruntime keeps the model's own)
        self.params: dict[str, Arr] = {
            t.name: numpy_helper.to_array(t).astype(np.float32)
            if t.data_type in _FLOAT32_OR_NARROWER else numpy_helper.to_array(t) for t in g.initializer
        }
        self.output = output or g.output[0].name
        needed, kept = {self.output}, []
        for n in reversed(g.node):  # only the ancestors of the output matter (drops ArgMax heads etc.)
            if needed & set(n.output):
                kept.append(n)
                needed |= {k for k in n.input if k}
        opsets = {o.domain: o.version for o in model.opset_import}
        opsets.setdefault("", opsets.get("ai.onnx", 1))
        self.nodes = [_make_node(n, opsets) for n in reversed(kept)]
        if fixed_weights:  # quantized weights as float constants (a QDQ Conv then runs on onnxruntime)
            self.nodes = fold_dequantized_weights(self.nodes, self.params)
        bad = _refusals(self.nodes, self.output)
        if bad:
            raise UnsupportedGraph(f"ops not supported by the gradient interpreter: {', '.join(bad)}")
        self.input = next(i.name for i in g.input if i.name not in self.params)
        self.applied_softmax = self.applied_sigmoid = False
        last = _head(self.nodes, self.output)
        if strip_softmax and last is not None and (last.op == "Softmax" or _exp_of_log_softmax(self.nodes, last)):
            self.output, self.applied_softmax = last.inputs[0], True
        elif strip_sigmoid and last is not None and last.op == "Sigmoid":  # a binary classifier's logit
            self.output, self.applied_sigmoid = last.inputs[0], True
        self.kernels = fixed_kernels(self.nodes, self.params, threads) if fixed_weights else {}
        # integer products as onnxruntime computes them on this CPU (saturating without VNNI)
        self.native = native_nodes(self.nodes, self.params, threads) if fixed_weights else {}

    def forward(self, x: Arr, params: dict[str, Arr] | None = None) -> dict[str, Arr]:
        """Run the graph; returns every intermediate tensor by name."""
        if params is not None and self.kernels:
            raise ValueError("a tape with fixed weights runs its own parameters only")
        env: dict[str, Arr] = dict(params or self.params)
        env[self.input] = x
        for i, n in enumerate(self.nodes):
            if n.op == "Constant":
                env[n.outputs[0]] = n.attrs["value"]
                continue
            if i in self.kernels:
                env[n.outputs[0]] = self.kernels[i].forward(env[n.inputs[0]])
                continue
            ins = [env[k] if k else _EMPTY for k in n.inputs]
            if i in self.native:
                env[n.outputs[0]] = self.native[i](ins)
                continue
            if n.op in MULTI_RULES:
                for name, value in zip(n.outputs, MULTI_RULES[n.op][0](ins, n.attrs), strict=False):
                    if name:
                        env[name] = value
            else:
                env[n.outputs[0]] = RULES[n.op][0](ins, n.attrs)
        return env

    def backward(self, env: dict[str, Arr], grad_out: Arr) -> dict[str, Arr]:
        """Reverse pass from ``d loss / d output``; returns gradients of every reached tensor (with fixed
        weights, none for the weights of the convolutions run on onnxruntime)."""
        grads: dict[str, Arr] = {self.output: grad_out}
        for i in reversed(range(len(self.nodes))):
            n = self.nodes[i]
            if n.op == "Constant":
                continue
            gin: list[Arr | None] | None
            if i in self.kernels:
                g = grads.get(n.outputs[0])
                gin = None if g is None else [self.kernels[i].input_grad(env[n.inputs[0]], g)]
            else:
                gin = self._node_grads(n, env, grads)
            for name, gi in zip(n.inputs, gin or [], strict=False):
                if gi is None or not name:
                    continue
                grads[name] = grads[name] + gi if name in grads else gi
        return grads

    @staticmethod
    def _node_grads(n: _Node, env: dict[str, Arr], grads: dict[str, Arr]) -> list[Arr | None] | None:
        """Input gradients of one node, ``None`` when no gradient reaches any of its outputs."""
        ins = [env[k] if k else _EMPTY for k in n.inputs]
        if n.op in MULTI_RULES:
            gs = [grads.get(k) if k else None for k in n.outputs]
            if all(g is None for g in gs):
                return None
            outs = [env[k] if k else _EMPTY for k in n.outputs]
            return MULTI_RULES[n.op][1](ins, outs, n.attrs, gs)
        g = grads.get(n.outputs[0])
        return None if g is None else RULES[n.op][1](ins, env[n.outputs[0]], n.attrs, g)

    def value_and_grad(self, x: Arr, cotangent: Any) -> tuple[Arr, Arr]:
        """Logits and ``d loss / d x`` where ``cotangent(logits) -> d loss / d logits``."""
        env = self.forward(x)
        logits = env[self.output]
        gx = self.backward(env, cotangent(logits)).get(self.input)
        return logits, np.zeros_like(x) if gx is None else gx
