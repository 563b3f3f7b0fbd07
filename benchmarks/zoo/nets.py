"""ONNX classifier graphs for the zoo, trained in numpy through the scanner's gradient tape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.onnx_autodiff import GraphTape

Arr = np.ndarray[Any, Any]


@dataclass(frozen=True)
class NetSpec:
    """Architecture of one zoo model."""

    arch: str  # "mlp", "mlp3" (flat [N,D]); "cnn", "cnn3", "vit" ([N,1,H,W]); "resnet" ([N,3,H,W])
    width: int = 32
    act: str = "Relu"
    pool: str = "MaxPool"
    output: str = "logits"  # "logits", "probs" or "both"


def _init(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> Arr:
    weights: Arr = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def _mlp(spec: NetSpec, d: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    p = {"W1": _init(rng, (spec.width, d), d), "b1": np.zeros(spec.width, np.float32),
         "W2": _init(rng, (spec.width, spec.width), spec.width), "b2": np.zeros(spec.width, np.float32),
         "W3": _init(rng, (k, spec.width), spec.width), "b3": np.zeros(k, np.float32)}
    nodes = [helper.make_node("Gemm", ["input", "W1", "b1"], ["h1"], transB=1),
             helper.make_node(spec.act, ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
             helper.make_node(spec.act, ["h2"], ["penultimate"]),
             helper.make_node("Gemm", ["penultimate", "W3", "b3"], ["logits"], transB=1)]
    return nodes, p


def _cnn(spec: NetSpec, hw: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    c1, c2, h = max(4, spec.width // 4), max(8, spec.width // 2), spec.width
    flat = c2 * (hw // 4) ** 2
    p = {"C1": _init(rng, (c1, 1, 3, 3), 9), "cb1": np.zeros(c1, np.float32),
         "C2": _init(rng, (c2, c1, 3, 3), 9 * c1), "cb2": np.zeros(c2, np.float32),
         "W1": _init(rng, (flat, h), flat), "b1": np.zeros(h, np.float32),
         "W2": _init(rng, (h, k), h), "b2": np.zeros(k, np.float32)}
    pool: dict[str, Any] = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [helper.make_node("Conv", ["input", "C1", "cb1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node(spec.act, ["c1"], ["r1"]),
             helper.make_node(spec.pool, ["r1"], ["p1"], **pool),
             helper.make_node("Conv", ["p1", "C2", "cb2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node(spec.act, ["c2"], ["r2"]),
             helper.make_node(spec.pool, ["r2"], ["p2"], **pool),
             helper.make_node("Flatten", ["p2"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "W1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["h1"]),
             helper.make_node(spec.act, ["h1"], ["penultimate"]),
             helper.make_node("MatMul", ["penultimate", "W2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["logits"])]
    return nodes, p


def _mlp3(spec: NetSpec, d: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    """Three hidden layers, the last one narrower, MatMul + Add instead of Gemm (as PyTorch exports)."""
    w, h = spec.width, max(8, spec.width // 2)
    p = {"W1": _init(rng, (d, w), d), "b1": np.zeros(w, np.float32), "W2": _init(rng, (w, w), w),
         "b2": np.zeros(w, np.float32), "W3": _init(rng, (w, h), w), "b3": np.zeros(h, np.float32),
         "W4": _init(rng, (h, k), h), "b4": np.zeros(k, np.float32)}
    nodes, x = [], "input"
    for n, out in enumerate(("a1", "a2", "penultimate"), start=1):
        nodes += [helper.make_node("MatMul", [x, f"W{n}"], [f"m{n}"]),
                  helper.make_node("Add", [f"m{n}", f"b{n}"], [f"h{n}"]),
                  helper.make_node(spec.act, [f"h{n}"], [out])]
        x = out
    nodes += [helper.make_node("MatMul", ["penultimate", "W4"], ["m4"]),
              helper.make_node("Add", ["m4", "b4"], ["logits"])]
    return nodes, p


def _cnn3(spec: NetSpec, hw: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    """Three convolutions (the last two with stride 2 instead of pooling), a BatchNormalization,
    global average pooling and one Gemm: no fully connected hidden layer."""
    c1, c2, c3 = max(4, spec.width // 4), max(8, spec.width // 2), spec.width
    p = {"C1": _init(rng, (c1, 1, 3, 3), 9), "cb1": np.zeros(c1, np.float32),
         "bn_s": np.ones(c1, np.float32), "bn_b": np.zeros(c1, np.float32),
         "bn_m": np.zeros(c1, np.float32), "bn_v": np.ones(c1, np.float32),
         "C2": _init(rng, (c2, c1, 3, 3), 9 * c1), "cb2": np.zeros(c2, np.float32),
         "C3": _init(rng, (c3, c2, 3, 3), 9 * c2), "cb3": np.zeros(c3, np.float32),
         "W": _init(rng, (k, c3), c3), "b": np.zeros(k, np.float32)}
    down: dict[str, Any] = {"pads": [1, 1, 1, 1], "strides": [2, 2]}
    nodes = [helper.make_node("Conv", ["input", "C1", "cb1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
             helper.make_node(spec.act, ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "C2", "cb2"], ["c2"], **down),
             helper.make_node(spec.act, ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "C3", "cb3"], ["c3"], **down),
             helper.make_node(spec.act, ["c3"], ["r3"]),
             helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
             helper.make_node("Flatten", ["g"], ["penultimate"], axis=1),
             helper.make_node("Gemm", ["penultimate", "W", "b"], ["logits"], transB=1)]
    return nodes, p


def _resnet(spec: NetSpec, hw: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    """A small residual net on [3, H, W]: a stem convolution, a residual block, a strided convolution
    doubling the channels, a second residual block, a second strided convolution doubling them again,
    global average pooling and one Gemm. Every
    convolution is followed by a BatchNormalization (identity statistics, trained scale and shift)."""
    w = spec.width
    p: dict[str, Arr] = {}
    nodes: list[Any] = []

    def conv(name: str, x: str, cin: int, cout: int, stride: int = 1) -> str:
        p[f"{name}_w"], p[f"{name}_b"] = _init(rng, (cout, cin, 3, 3), 9 * cin), np.zeros(cout, np.float32)
        p.update({f"{name}_s": np.ones(cout, np.float32), f"{name}_t": np.zeros(cout, np.float32),
                  f"{name}_m": np.zeros(cout, np.float32), f"{name}_v": np.ones(cout, np.float32)})
        nodes.extend([helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], pads=[1, 1, 1, 1],
                                       strides=[stride, stride]),
                      helper.make_node("BatchNormalization", [f"{name}_c", *(f"{name}_{q}" for q in "stmv")],
                                       [name])])
        return name

    def act(x: str) -> str:
        nodes.append(helper.make_node(spec.act, [x], [f"{x}_a"]))
        return f"{x}_a"

    def block(name: str, x: str, c: int) -> str:
        h = conv(f"{name}2", act(conv(f"{name}1", x, c, c)), c, c)
        nodes.append(helper.make_node("Add", [h, x], [f"{name}_sum"]))
        return act(f"{name}_sum")

    h = block("b2", act(conv("down", block("b1", act(conv("stem", "input", 3, w)), w), w, 2 * w, 2)), 2 * w)
    h = act(conv("down2", h, 2 * w, 4 * w, 2))
    p["W"], p["b"] = _init(rng, (k, 4 * w), 4 * w), np.zeros(k, np.float32)
    nodes += [helper.make_node("GlobalAveragePool", [h], ["g"]),
              helper.make_node("Flatten", ["g"], ["penultimate"], axis=1),
              helper.make_node("Gemm", ["penultimate", "W", "b"], ["logits"], transB=1)]
    return nodes, p


def _vit(spec: NetSpec, hw: int, k: int, rng: np.random.Generator) -> tuple[list[Any], dict[str, Arr]]:
    """A small vision transformer on [1, H, W]: 4 x 4 patches embedded by a strided convolution, learned
    position embeddings, one pre-norm block (single-head self-attention, then a GELU MLP, each with a
    residual connection), mean pooling over the tokens, a final LayerNormalization and one Gemm."""
    d, patch = spec.width, 4
    tokens = (hw // patch) ** 2
    p: dict[str, Arr] = {"E": _init(rng, (d, 1, patch, patch), patch * patch), "e": np.zeros(d, np.float32),
                         "P": (0.02 * rng.standard_normal((tokens, d))).astype(np.float32)}
    shapes = {"Q": (d, d), "K": (d, d), "V": (d, d), "O": (d, d), "M1": (d, 2 * d), "M2": (2 * d, d)}
    for name, (a, b) in shapes.items():
        p[name] = _init(rng, (a, b), a)
    p.update({"m1": np.zeros(2 * d, np.float32), "m2": np.zeros(d, np.float32),
              **{f"ln{i}_{q}": (np.ones if q == "s" else np.zeros)(d, np.float32) for i in (1, 2, 3) for q in "sb"},
              "W": _init(rng, (k, d), d), "b": np.zeros(k, np.float32)})

    def node(op: str, ins: list[str], out: str, **kw: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], **kw))
        return out

    nodes: list[Any] = []
    constants: dict[str, Arr] = {
        "shape": np.array([0, d, tokens], np.int64), "scale": np.array(d ** -0.5, np.float32),
        "half": np.array(0.5, np.float32), "one": np.array(1.0, np.float32),
        "root2": np.array(np.sqrt(2.0), np.float32)}
    for name, value in constants.items():  # graph constants, not trained parameters
        node("Constant", [], name, value=numpy_helper.from_array(value, name))
    x = node("Conv", ["input", "E", "e"], "patches", strides=[patch, patch])
    x = node("Transpose", [node("Reshape", [x, "shape"], "flat")], "tok", perm=[0, 2, 1])
    x = node("Add", [x, "P"], "tok_p")
    h = node("LayerNormalization", [x, "ln1_s", "ln1_b"], "ln1", axis=-1)
    q, key, v = (node("MatMul", [h, w], w.lower()) for w in "QKV")
    scores = node("Mul", [node("MatMul", [q, node("Transpose", [key], "kt", perm=[0, 2, 1])], "qk"), "scale"], "s")
    att = node("MatMul", [node("Softmax", [scores], "attn", axis=-1), v], "av")
    x = node("Add", [x, node("MatMul", [att, "O"], "o")], "r1")
    h = node("Add", [node("MatMul", [node("LayerNormalization", [x, "ln2_s", "ln2_b"], "ln2", axis=-1), "M1"],
                          "h1"), "m1"], "h1b")
    gelu = node("Mul", [node("Mul", [h, "half"], "hh"),
                        node("Add", [node("Erf", [node("Div", [h, "root2"], "hs")], "he"), "one"], "he1")], "g1")
    x = node("Add", [x, node("Add", [node("MatMul", [gelu, "M2"], "h2"), "m2"], "h2b")], "r2")
    pooled = node("ReduceMean", [x], "pool", axes=[1], keepdims=0)
    node("LayerNormalization", [pooled, "ln3_s", "ln3_b"], "penultimate", axis=-1)
    node("Gemm", ["penultimate", "W", "b"], "logits", transB=1)
    return nodes, p


_MAKERS = {"mlp": _mlp, "cnn": _cnn, "mlp3": _mlp3, "cnn3": _cnn3, "resnet": _resnet, "vit": _vit}


def build(spec: NetSpec, input_shape: tuple[int, ...], k: int, params: dict[str, Arr] | None = None,
          seed: int = 0) -> onnx.ModelProto:
    """ONNX model for ``spec``; fresh He-initialised weights unless ``params`` is given."""
    rng = np.random.default_rng(seed)
    maker = _MAKERS[spec.arch]
    nodes, p = maker(spec, input_shape[-1], k, rng)
    p = params or p
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])]
    if spec.output in ("probs", "both"):
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])
        outputs = [probs] if spec.output == "probs" else [helper.make_tensor_value_info(
            "label", TensorProto.INT64, ["N"]), probs, outputs[0]]
        if spec.output == "both":
            nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
    graph = helper.make_graph(nodes, "zoo", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", *input_shape])], outputs,
        [numpy_helper.from_array(v, n) for n, v in p.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def train(spec: NetSpec, x: Arr, y: Arr, k: int, *, epochs: int, seed: int, lr: float = 3e-3) -> dict[str, Arr]:
    """Adam on cross-entropy; returns the trained parameters."""
    tape = GraphTape(build(NetSpec(spec.arch, spec.width, spec.act, spec.pool), x.shape[1:], k, seed=seed))
    rng = np.random.default_rng(seed)
    params = dict(tape.params)
    m = {n: np.zeros_like(v) for n, v in params.items()}
    v = {n: np.zeros_like(a) for n, a in params.items()}
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), 64):
            idx = order[s:s + 64]
            env = tape.forward(x[idx], params)
            z = env[tape.output]
            pr = np.exp(z - z.max(axis=1, keepdims=True))
            pr /= pr.sum(axis=1, keepdims=True)
            pr[np.arange(len(idx)), y[idx]] -= 1.0
            grads = tape.backward(env, (pr / len(idx)).astype(np.float32))
            step += 1
            for n in params:
                g = grads.get(n)
                if g is None:
                    continue
                m[n] = 0.9 * m[n] + 0.1 * g
                v[n] = 0.999 * v[n] + 0.001 * g * g
                mh, vh = m[n] / (1 - 0.9 ** step), v[n] / (1 - 0.999 ** step)
                params[n] = (params[n] - lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    return params


def predict(params: dict[str, Arr], spec: NetSpec, x: Arr, k: int) -> Arr:
    """Predicted labels with the numpy tape (fast, no onnxruntime session needed)."""
    tape = GraphTape(build(NetSpec(spec.arch, spec.width, spec.act, spec.pool), x.shape[1:], k, params))
    labels: Arr = np.argmax(tape.forward(x)[tape.output], axis=1)
    return labels


def as_channels_last(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (image input [N, C, H, W]) behind an [N, H, W, C] input, as a Keras model exported by
    tf2onnx looks: one Transpose in front, everything else unchanged."""
    source = model.graph.input[0]
    n, c, h, w = (d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim)
    front = helper.make_node("Transpose", ["input_hwc"], [source.name], perm=[0, 3, 1, 2])
    graph = helper.make_graph([front, *model.graph.node], model.graph.name,
                              [helper.make_tensor_value_info("input_hwc", source.type.tensor_type.elem_type,
                                                             [n, h, w, c])],
                              list(model.graph.output), list(model.graph.initializer))
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out
