"""onnxruntime implementation of the detectors' ``ModelHandle`` (the only onnxruntime import).

Intermediate activations are exposed by adding graph outputs to a second session. Gradients come
from the numpy tape in :mod:`onnx_autodiff` (exact) or, for graphs with ops it does not know, from a
NES estimate through onnxruntime (antithetic Gaussian probes, as in B3D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from services.scanner.adapters.onnx_autodiff import GraphTape, UnsupportedGraph
from services.scanner.adapters.onnx_batch import fixed_batch_of_one, free_batch
from services.scanner.adapters.onnx_cost import macs_per_sample
from services.scanner.adapters.onnx_input_scaler import leading_affine
from services.scanner.adapters.onnx_outputs import (
    expose_zipmap_inputs,
    inferred_types,
    reversed_svm_columns,
    two_class_logits,
    zipmap_sources,
)
from services.scanner.adapters.ort_options import scan_threads, session_options

Arr = np.ndarray[Any, Any]
_LINEAR = {"Gemm", "MatMul"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_PASS = {"Add", "Softmax", "Identity", "LogSoftmax", "Flatten", "Reshape", "Dropout"}
_LAYER_OPS = {"Relu", "LeakyRelu", "Tanh", "Sigmoid", "Flatten", "MaxPool", "AveragePool",
              "GlobalAveragePool", "Clip", "Conv", "BatchNormalization", "Gemm"}


_FLOAT_TYPES: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                                                   "tensor(float16)": np.float16}
_ELEM = {np.float16: onnx.TensorProto.FLOAT16, np.float32: onnx.TensorProto.FLOAT, np.float64: onnx.TensorProto.DOUBLE}
HALF_TOLERANCE = 2e-2  # relative: a float32 tape against onnxruntime running float16 (11-bit mantissa, layers)


class ModelError(ValueError):
    """The file is not a usable ONNX classifier."""


class ShapeMismatch(ModelError):
    """The data's samples (``sample``) do not have the shape the model's input takes (``expected``)."""

    def __init__(self, name: str, sample: tuple[int, ...], expected: tuple[Any, ...]) -> None:
        super().__init__(f"input {name} {expected} does not take samples of shape {sample}")
        self.sample, self.expected = sample, expected


def _session(model: onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    opts = session_options(threads)
    if any(n.op_type in _QDQ for n in model.graph.node):
        # as written: the extended level fuses QDQ pairs into integer kernels that saturate on CPUs without VNNI,
        # and the verdict must not depend on the machine (see onnx_native_ops)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def load_onnx(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file; refuse external data (path tricks) and non-ONNX bytes."""
    if path.is_dir():
        raise ModelError(f"model {path} is a directory, not a file")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelError(f"{path} uses external tensor data, which the scanner refuses")
    if not model.graph.node:
        raise ModelError(f"{path} has an empty graph")
    return model


class TapeMismatch(ValueError):
    """The numpy tape runs the graph differently from onnxruntime (or not at all)."""


def _checked_tape(tape: GraphTape, run: Callable[[Arr], Arr], shape: tuple[int, ...], rtol: float = 1e-3) -> GraphTape:
    """``tape`` if its forward pass agrees with onnxruntime on a random probe; an op the tape knows by
    name but computes differently (an unusual attribute, a shape it does not handle) must not give
    wrong gradients silently: the caller falls back to the gradient-free estimate."""
    x = np.random.default_rng(0).uniform(0.0, 1.0, (2, *shape)).astype(np.float32)
    try:
        got = np.asarray(tape.forward(x)[tape.output], dtype=np.float64)
    except Exception as exc:  # any failure inside the interpreter means: do not trust it
        raise TapeMismatch(f"tape failed on a probe input: {type(exc).__name__}: {exc}") from exc
    if tape.applied_softmax:
        got = np.exp(got - got.max(axis=1, keepdims=True))
        got /= got.sum(axis=1, keepdims=True)
    if tape.applied_sigmoid:
        got = 1.0 / (1.0 + np.exp(-got))
    want = np.asarray(run(x), dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=0.1 * rtol * scale):
        raise TapeMismatch("tape output differs from onnxruntime on a probe input")
    return tape


class OnnxModel:
    """A classifier behind the ``ModelHandle`` port.

    Args:
        model: Parsed model (see :func:`load_onnx`).
        output: Name of the [N, classes] float output; the first such output when ``None``.
        nes_samples: Probe pairs per input for the gradient-free fallback.
    """

    def __init__(self, model: onnx.ModelProto, output: str | None = None, nes_samples: int = 16,
                 sample_shape: tuple[int, ...] | None = None) -> None:
        self.model, self.nes_samples = expose_zipmap_inputs(model), nes_samples
        self.notes: list[str] = []
        if fixed_batch_of_one(self.model):
            self.model = _with_free_batch(self.model, sample_shape)
            self.notes.append("the model declares a batch of 1; the scan runs a copy with a free batch dim, "
                              "checked against the original sample by sample")
        model = self.model
        try:
            self.session = _session(model)
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load the model: {exc}") from exc
        inputs = [i for i in self.session.get_inputs()]
        if len(inputs) != 1 or inputs[0].type not in _FLOAT_TYPES:
            raise ModelError(f"need exactly one float input, got {[(i.name, i.type) for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_dtype = _FLOAT_TYPES[inputs[0].type]  # skl2onnx exports with double types take float64
        self.input_shape: tuple[int, ...] = _sample_shape(self.input_name, list(inputs[0].shape[1:]), sample_shape)
        # budgets count work, not seconds: one sample's forward pass (and, below, forward passes per gradient)
        self.macs_per_sample = macs_per_sample(model, self.input_shape)
        self.threads = scan_threads(self.macs_per_sample)
        if self.threads > 1:  # a costly model: every session on every core (see ort_options)
            self.session = _session(model, self.threads)
        self.output_name = self._pick_output(output)
        self.outputs_probabilities = self._producer(self.output_name) in ("Softmax",)
        raw = self._run(np.zeros((2, *self.input_shape), np.float32))
        # one column: a binary classifier's sigmoid probability or logit of the positive class, read as
        # two classes (negative 0, positive 1) with logits [0, z]
        self.single_column = raw.shape[1] == 1
        self.sigmoid_output = self.single_column and self._producer(self.output_name) in ("Sigmoid", "HardSigmoid")
        self.num_classes = 2 if self.single_column else int(raw.shape[1])
        self.reversed_columns = reversed_svm_columns(self.model, self.output_name)
        if self.reversed_columns:
            self.notes.append("a two-class SVMClassifier writes its scores as [-d, d] with d > 0 meaning the first "
                              "class; the scan reads them in class order, [d, -d]")
        self.outputs_probabilities = self.outputs_probabilities or (not self.single_column and bool(
            np.all(raw >= 0) and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)))
        self.tape: GraphTape | None = None
        self.gradient_note = "exact: numpy tape checked against onnxruntime"
        try:
            tape = GraphTape(model, self.output_name, fixed_weights=True, strip_sigmoid=self.sigmoid_output,
                             threads=self.threads)
            self.tape = _checked_tape(tape, self._run, self.input_shape,
                                      rtol=HALF_TOLERANCE if self.input_dtype == np.float16 else 1e-3)
        except (UnsupportedGraph, TapeMismatch) as exc:
            self.gradient_note = f"estimated (NES): {exc}"
        self.exact_gradients = self.tape is not None
        self.input_scaler = leading_affine(model, self.input_name, self.input_shape)
        self.gradient_passes = 3 if self.exact_gradients else 1 + 2 * nes_samples
        self._act_session: ort.InferenceSession | None = None

    def _producer(self, name: str) -> str | None:
        return next((n.op_type for n in self.model.graph.node if name in n.output), None)

    def _pick_output(self, name: str | None) -> str:
        outs = self.session.get_outputs()
        if name is not None:
            name = zipmap_sources(self.model).get(name, name)  # a ZipMap output means its tensor input
            if name not in [o.name for o in outs]:
                raise ModelError(f"output {name!r} not in model outputs {[o.name for o in outs]}")
            return name
        for o in outs:
            if o.type in _FLOAT_TYPES and len(o.shape) == 2:
                return str(o.name)
        raise ModelError(f"no float [N, classes] output among {[(o.name, o.type, o.shape) for o in outs]}")

    def _run(self, x: Arr) -> Arr:
        feed = {self.input_name: np.ascontiguousarray(x, self.input_dtype)}
        return np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)

    def logits(self, x: Arr) -> Arr:
        """Logits [N, K] (log-probabilities when the model outputs probabilities)."""
        width = 1 if self.single_column else self.num_classes
        out = np.concatenate([self._run(np.ascontiguousarray(x[i:i + 4096], np.float32))
                              for i in range(0, len(x), 4096)]) if len(x) else np.zeros((0, width), np.float32)
        if self.single_column:
            return two_class_logits(out, self.sigmoid_output)
        if self.reversed_columns:
            return np.ascontiguousarray(out[:, ::-1])
        return np.log(np.clip(out, 1e-12, 1.0)) if self.outputs_probabilities else out

    def predict(self, x: Arr) -> Arr:
        z = self.logits(x)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out: Arr = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return out

    def layers(self) -> Sequence[str]:
        nodes = list(self.model.graph.node)
        params = {t.name for t in self.model.graph.initializer}
        head = self.output_name
        for n in reversed(nodes):  # walk back from the output to the last linear layer
            if head in n.output and n.op_type in _PASS | _LINEAR:
                data_in = [i for i in n.input if i not in params]
                if n.op_type in _LINEAR:
                    head = data_in[0]
                    break
                head = data_in[0] if data_in else head
        names = [n.output[0] for n in nodes if n.op_type in _LAYER_OPS and n.output[0] != head]
        cut = next((k for k, n in enumerate(nodes) if head in n.output), len(nodes))
        return [m for m in names if any(m in n.output for n in nodes[:cut])] + [head]

    def activations(self, x: Arr, layer: str) -> Arr:
        if layer not in self.layers():
            raise ModelError(f"unknown layer {layer!r}; candidates: {list(self.layers())}")
        if self._act_session is None:
            m = onnx.ModelProto()
            m.CopyFrom(self.model)
            known = {o.name for o in m.graph.output}
            types = inferred_types(m)  # a layer's own element type (a cast inside the graph may change it)
            for name in self.layers():
                if name not in known:
                    elem = types.get(name, _ELEM[self.input_dtype])
                    m.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            self._act_session = _session(m, self.threads)
        session, dtype = self._act_session, self.input_dtype
        out = [session.run([layer], {self.input_name: np.ascontiguousarray(x[i:i + 4096], dtype)})[0]
               for i in range(0, len(x), 4096)]
        return np.concatenate(out).reshape(len(x), -1).astype(np.float32)

    def value_and_grad(self, x: Arr, cotangent: Callable[[Arr], Arr]) -> tuple[Arr, Arr]:
        x = np.ascontiguousarray(x, np.float32)
        if self.tape is None:
            return self._nes(x, cotangent)
        env = self.tape.forward(x)
        out = env[self.tape.output]
        if self.single_column:
            # the tape stops before a final Sigmoid (its input is the logit); else d z / d p = 1 / (p (1 - p))
            sigmoid = self.sigmoid_output and not self.tape.applied_sigmoid
            z = two_class_logits(out, sigmoid)
            seed = cotangent(z)[:, 1:]
            if sigmoid:
                p = np.clip(out, 1e-6, 1.0 - 1e-6)
                seed = seed / (p * (1.0 - p))
        elif self.reversed_columns:
            z = np.ascontiguousarray(out[:, ::-1])
            seed = cotangent(z)[:, ::-1]
        elif self.outputs_probabilities and not self.tape.applied_softmax:
            z = np.log(np.clip(out, 1e-12, 1.0))
            seed = cotangent(z) / np.clip(out, 1e-12, None)
        else:
            z, seed = out, cotangent(out)
        gx = self.tape.backward(env, seed.astype(np.float32)).get(self.tape.input)
        return z.astype(np.float32), (np.zeros_like(x) if gx is None else gx.astype(np.float32))

    def _nes(self, x: Arr, cotangent: Callable[[Arr], Arr]) -> tuple[Arr, Arr]:
        z = self.logits(x)
        c = cotangent(z)
        rng = np.random.default_rng(0)
        sigma = 0.01 * max(float(np.ptp(x)), 1e-3)
        u = rng.standard_normal((self.nes_samples, *x.shape)).astype(np.float32)
        probes = np.concatenate([x[None] + sigma * u, x[None] - sigma * u]).reshape(-1, *self.input_shape)
        zp = self.logits(probes).reshape(2, self.nes_samples, len(x), -1)
        diff = ((zp[0] - zp[1]) * c[None]).sum(axis=-1)  # [S, N]
        g = (diff.reshape(*diff.shape, *[1] * (x.ndim - 1)) * u).mean(axis=0) / (2 * sigma)
        return z, g.astype(np.float32)


def open_model(path: Path, output: str | None = None, sample_shape: tuple[int, ...] | None = None) -> OnnxModel:
    """Load and wrap an ONNX classifier, with clear errors for anything unusable; ``sample_shape`` (the
    data's) fills input dims the graph leaves symbolic. Errors name ``path``; a :class:`ShapeMismatch` is
    left for the caller, which knows the data file."""
    model = load_onnx(path)
    try:
        return OnnxModel(model, output, sample_shape=sample_shape)
    except ShapeMismatch:
        raise
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


def _with_free_batch(model: onnx.ModelProto, hint: tuple[int, ...] | None) -> onnx.ModelProto:
    """``model`` with its batch dim of 1 freed (see :mod:`onnx_batch`), or a clear refusal."""
    source = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in source.type.tensor_type.shape.dim]
    shape = _sample_shape(source.name, dims[1:], hint)
    dtype = {elem: np_type for np_type, elem in _ELEM.items()}.get(source.type.tensor_type.elem_type, np.float32)
    sessions: dict[int, ort.InferenceSession] = {}  # one per model, not one per probe

    def run(m: onnx.ModelProto, x: Arr) -> Arr:
        session = sessions.get(id(m)) or sessions.setdefault(id(m), _session(m))
        outs = session.run(None, {source.name: x.astype(dtype)})
        return np.concatenate([np.asarray(o, np.float64).reshape(len(x), -1) for o in outs
                               if isinstance(o, np.ndarray) and o.ndim and len(o) == len(x)], axis=1)

    try:
        freed = free_batch(model, run, shape)
    except Exception as exc:  # the original itself does not run on its own declared shape
        raise ModelError(f"the model declares a batch of 1 and does not run on one sample: {exc}") from exc
    if freed is None:
        raise ModelError("the model declares a batch of 1 and its graph depends on it (a reshape or shape "
                         "the scanner cannot free); export it with a dynamic batch axis")
    return freed


def _sample_shape(name: str, dims: list[Any], hint: tuple[int, ...] | None) -> tuple[int, ...]:
    """The input's non-batch dims: the graph's where it fixes them, else the data's (``hint``)."""
    if dims and all(isinstance(d, int) and d > 0 for d in dims):
        if hint is not None and tuple(hint) != tuple(dims):
            raise ShapeMismatch(name, tuple(hint), tuple(dims))
        return tuple(int(d) for d in dims)
    if hint is None:
        raise ModelError(f"input {name} has symbolic non-batch dims {dims}; the scan needs the data's sample "
                         f"shape to fill them")
    if len(hint) != len(dims) or any(isinstance(d, int) and d > 0 and d != h for d, h in zip(dims, hint, strict=True)):
        raise ShapeMismatch(name, tuple(hint), tuple(dims))
    return tuple(int(h) for h in hint)


