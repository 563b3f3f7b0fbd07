"""A small numpy interpreter for ONNX graphs with reverse-mode gradients.

Why: trigger reverse engineering (Neural Cleanse, MM-BD) needs input gradients and the default
install has no torch. Converting ONNX to a framework is heavy and lossy; a numpy tape over the
op subset that small classifiers use gives exact gradients with no new dependency. Graphs with
other ops raise :class:`UnsupportedGraph` at load and the caller falls back to a gradient-free
estimate. The same tape also returns parameter gradients, which the benchmark zoo uses to train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from services.scanner.adapters.onnx_ops import RULES, Arr


class UnsupportedGraph(ValueError):
    """The graph uses an operator the interpreter does not implement."""


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


def _attr_value(a: onnx.AttributeProto) -> Any:
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    return onnx.helper.get_attribute_value(a)


class GraphTape:
    """Forward and backward over one ONNX graph.

    Args:
        model: The ONNX model.
        output: Name of the graph output to differentiate; the first output when ``None``.
        strip_softmax: When the output is produced by a final Softmax, differentiate its input
            (the logits) instead, which is what attacks and margins want.
    """

    def __init__(self, model: onnx.ModelProto, output: str | None = None, strip_softmax: bool = True) -> None:
        g = model.graph
        self.params: dict[str, Arr] = {
            t.name: numpy_helper.to_array(t).astype(np.float32)
            if t.data_type == onnx.TensorProto.FLOAT else numpy_helper.to_array(t) for t in g.initializer
        }
        self.output = output or g.output[0].name
        needed, kept = {self.output}, []
        for n in reversed(g.node):  # only the ancestors of the output matter (drops ArgMax heads etc.)
            if needed & set(n.output):
                kept.append(n)
                needed |= set(n.input)
        self.nodes = [_Node(n.op_type, tuple(n.input), tuple(n.output),
                            {a.name: _attr_value(a) for a in n.attribute}) for n in reversed(kept)]
        bad = sorted({n.op for n in self.nodes if n.op not in RULES and n.op != "Constant"})
        if bad:
            raise UnsupportedGraph(f"ops not supported by the gradient interpreter: {', '.join(bad)}")
        self.input = next(i.name for i in g.input if i.name not in self.params)
        self.applied_softmax = False
        last = next((n for n in self.nodes if self.output in n.outputs), None)
        if strip_softmax and last is not None and last.op == "Softmax":
            self.output, self.applied_softmax = last.inputs[0], True

    def forward(self, x: Arr, params: dict[str, Arr] | None = None) -> dict[str, Arr]:
        """Run the graph; returns every intermediate tensor by name."""
        env: dict[str, Arr] = dict(params or self.params)
        env[self.input] = x
        for n in self.nodes:
            if n.op == "Constant":
                env[n.outputs[0]] = np.asarray(n.attrs["value"])
                continue
            ins = [env[k] if k else np.zeros(0, np.float32) for k in n.inputs]
            env[n.outputs[0]] = RULES[n.op][0](ins, n.attrs)
        return env

    def backward(self, env: dict[str, Arr], grad_out: Arr) -> dict[str, Arr]:
        """Reverse pass from ``d loss / d output``; returns gradients of every reached tensor."""
        grads: dict[str, Arr] = {self.output: grad_out}
        for n in reversed(self.nodes):
            g = grads.get(n.outputs[0])
            if g is None or n.op == "Constant":
                continue
            ins = [env[k] if k else np.zeros(0, np.float32) for k in n.inputs]
            for name, gi in zip(n.inputs, RULES[n.op][1](ins, env[n.outputs[0]], n.attrs, g), strict=False):
                if gi is None or not name:
                    continue
                grads[name] = grads[name] + gi if name in grads else gi
        return grads

    def value_and_grad(self, x: Arr, cotangent: Any) -> tuple[Arr, Arr]:
        """Logits and ``d loss / d x`` where ``cotangent(logits) -> d loss / d logits``."""
        env = self.forward(x)
        logits = env[self.output]
        gx = self.backward(env, cotangent(logits)).get(self.input)
        return logits, np.zeros_like(x) if gx is None else gx
