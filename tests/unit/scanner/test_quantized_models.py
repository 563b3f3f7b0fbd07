"""Quantized models: onnxruntime's own quantizers applied to backdoored and clean zoo models.

``quantize_dynamic`` (DynamicQuantizeLinear, MatMulInteger, ConvInteger) and ``quantize_static`` in
the QDQ (QuantizeLinear / DequantizeLinear pairs) and QOperator (QLinearConv, QLinearMatMul and the
com.microsoft QGemm / QLinearAdd) formats. The tape must run them as onnxruntime does (else the scan
would fall back to the slower, noisier gradient-free estimate) and its straight-through gradients
must be those of the float twin of each op (dequantised weights, identity inside the clip range).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from benchmarks.zoo.attacks import Attack, poison
from benchmarks.zoo.nets import NetSpec, build, train
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_autodiff import GraphTape, UnsupportedGraph
from services.scanner.adapters.onnx_model import open_model
from services.scanner.service_layer.scan import ScanConfig, scan_model
from tests.unit.conftest import held_out_digits

pytestmark = pytest.mark.unit

Arr = np.ndarray[Any, Any]
N = helper.make_node
_R = np.random.default_rng(0)
# the MLP's full search takes about a second; the CNN's reduced one (150 Neural Cleanse steps) a few
CONFIGS = {"mlp": ScanConfig(),
           "cnn": ScanConfig(params={"neural_cleanse.v2": {"steps": 150}, "mmbd.v2": {"steps": 30, "starts": 4}})}
FORMATS = ("dynamic", "qdq", "qoperator")


# -- one op at a time: forward against onnxruntime, gradient against the float twin ----------------

def _model(nodes: list[onnx.NodeProto], params: dict[str, Arr], x: Arr) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in params.items()])
    ops = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def _q(v: Arr, scale: Arr | float, zp: int | Arr = 0, dtype: Any = np.int8) -> Arr:
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return np.clip(np.rint(v / scale) + zp, lo, hi).astype(dtype)


@dataclass
class Case:
    name: str
    nodes: list[onnx.NodeProto]
    params: dict[str, Arr]
    twin: list[onnx.NodeProto]  # the float op on dequantised weights
    twin_params: dict[str, Arr]
    x: Arr


def _scalar(v: float, dtype: Any = np.float32) -> Arr:
    return np.asarray(v, dtype)


W = _R.normal(size=(4, 3)).astype(np.float32)
WS = np.float32(0.02)
WQ = _q(W, WS)
K = _R.normal(size=(3, 2, 3, 3)).astype(np.float32)
KS = np.asarray([0.01, 0.02, 0.015], np.float32)  # per output channel
KQ = _q(K, KS.reshape(-1, 1, 1, 1))
XS, XZ = _scalar(0.02), _scalar(128, np.uint8)
IN_Q = [N("QuantizeLinear", ["x", "xs", "xz"], ["xq"])]
IN_P = {"xs": XS, "xz": XZ}
OUT_Q = {"ys": _scalar(0.05), "yz": _scalar(128, np.uint8)}


def _deq(q: Arr, s: Arr | np.float32) -> Arr:
    return (q.astype(np.float32) * s).astype(np.float32)


CASES = [
    Case("QDQ-uint8", [*IN_Q, N("DequantizeLinear", ["xq", "xs", "xz"], ["y"])], IN_P,
         [N("Clip", ["x", "lo", "hi"], ["y"])], {"lo": _scalar(-2.56), "hi": _scalar(2.54)},
         _R.normal(size=(3, 4)) * 2),
    Case("QDQ-int8-per-axis", [N("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
                               N("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)],
         {"s": np.asarray([0.01, 0.02, 0.03, 0.04], np.float32), "z": np.zeros(4, np.int8)},
         [N("Min", ["x", "hi"], ["m"]), N("Max", ["m", "lo"], ["y"])],
         {"hi": np.asarray([1.27, 2.54, 3.81, 5.08], np.float32), "lo": np.asarray([-1.28, -2.56, -3.84, -5.12],
                                                                                   np.float32)},
         _R.normal(size=(3, 4)) * 3),
    Case("DynamicQuantizeLinear-MatMulInteger",
         [N("DynamicQuantizeLinear", ["x"], ["xq", "s", "z"]), N("MatMulInteger", ["xq", "w", "z", "wz"], ["acc"]),
          N("Cast", ["acc"], ["accf"], to=1), N("Mul", ["s", "ws"], ["sc"]), N("Mul", ["accf", "sc"], ["y"])],
         {"w": WQ, "wz": _scalar(0, np.int8), "ws": _scalar(WS)}, [N("MatMul", ["x", "w"], ["y"])],
         {"w": _deq(WQ, WS)}, _R.normal(size=(5, 4))),
    Case("DynamicQuantizeLinear-ConvInteger",
         [N("DynamicQuantizeLinear", ["x"], ["xq", "s", "z"]),
          N("ConvInteger", ["xq", "w", "z"], ["acc"], pads=[1, 1, 1, 1]), N("Cast", ["acc"], ["accf"], to=1),
          N("Mul", ["s", "ws"], ["sc"]), N("Mul", ["accf", "sc"], ["y"])],
         {"w": _q(K, 0.02), "ws": _scalar(0.02)}, [N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
         {"w": _deq(_q(K, 0.02), np.float32(0.02))}, _R.normal(size=(2, 2, 5, 5))),
    Case("QLinearMatMul", [*IN_Q, N("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"]),
                           N("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
         {**IN_P, "w": WQ, "ws": _scalar(WS), "wz": _scalar(0, np.int8), **OUT_Q},
         [N("Clip", ["x", "lo", "hi"], ["c"]), N("MatMul", ["c", "w"], ["y"])],
         {"lo": _scalar(-2.56), "hi": _scalar(2.54), "w": _deq(WQ, WS)}, _R.normal(size=(3, 4))),
    Case("QLinearConv-per-channel-bias",
         [*IN_Q, N("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"], strides=[2, 2]),
          N("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
         {**IN_P, "w": KQ, "ws": KS, "wz": np.zeros(3, np.int8), **OUT_Q, "b": np.asarray([100, -50, 0], np.int32)},
         [N("Conv", ["x", "w", "b"], ["y"], strides=[2, 2])],
         {"w": _deq(KQ, KS.reshape(-1, 1, 1, 1)), "b": (np.asarray([100, -50, 0]) * 0.02 * KS).astype(np.float32)},
         _R.normal(size=(2, 2, 5, 5)) * 0.3),  # no output saturates
    Case("QGemm-com.microsoft",
         [*IN_Q, N("QGemm", ["xq", "xs", "xz", "w", "ws", "wz", "", "ys", "yz"], ["yq"], domain="com.microsoft",
                   transB=1), N("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
         {**IN_P, "w": WQ.T.copy(), "ws": _scalar(WS), "wz": _scalar(0, np.int8), **OUT_Q},
         [N("MatMul", ["x", "w"], ["y"])], {"w": _deq(WQ, WS)}, _R.normal(size=(3, 4))),
    Case("QLinearAdd-com.microsoft",
         [*IN_Q, N("QLinearAdd", ["xq", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["yq"], domain="com.microsoft"),
          N("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
         {**IN_P, "b": _q(W[:, 0], 0.01, 128, np.uint8), "bs": _scalar(0.01), "bz": _scalar(128, np.uint8), **OUT_Q},
         [N("Add", ["x", "b"], ["y"])], {"b": _deq(_q(W[:, 0], 0.01, 128, np.uint8).astype(np.int32) - 128, 0.01)},
         _R.normal(size=(3, 4))),
]


def _ort(model: onnx.ModelProto, x: Arr) -> Arr:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(s.run(["y"], {"x": x})[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_quantized_op_forward_matches_onnxruntime_and_its_float_twin(case: Case) -> None:
    x = case.x.astype(np.float32)
    model = _model(case.nodes, case.params, x)
    got = GraphTape(model, "y", strip_softmax=False).forward(x)["y"]
    np.testing.assert_allclose(got, _ort(model, x), rtol=1e-6, atol=1e-6)
    twin = GraphTape(_model(case.twin, case.twin_params, x), "y", strip_softmax=False).forward(x)["y"]
    np.testing.assert_allclose(got, twin, atol=0.15)  # a few quanta of the coarsest scale


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_quantized_op_gradient_is_the_straight_through_estimate(case: Case, fixed: bool) -> None:
    """The input gradient is the float twin's: identity inside each clip range, float ops on the
    dequantised weights (also with the weights folded and convolutions on onnxruntime)."""
    x = case.x.astype(np.float32)
    tape = GraphTape(_model(case.nodes, case.params, x), "y", strip_softmax=False, fixed_weights=fixed)
    twin = GraphTape(_model(case.twin, case.twin_params, x), "y", strip_softmax=False)
    env, twin_env = tape.forward(x), twin.forward(x)
    c = np.random.default_rng(1).normal(size=env["y"].shape).astype(np.float32)
    got = tape.backward(env, c)[tape.input]
    np.testing.assert_allclose(got, twin.backward(twin_env, c)[twin.input], rtol=1e-5, atol=1e-5)
    if case.name.startswith("QDQ"):
        assert (got == 0).any() and (got != 0).any()  # some inputs saturated, some did not


def test_settings_the_quantized_rules_do_not_cover_are_refused_or_fall_back() -> None:
    x = np.zeros((2, 4), np.float32)
    block = _model([N("QuantizeLinear", ["x", "s"], ["q"], axis=1, block_size=2),
                    N("DequantizeLinear", ["q", "s"], ["y"], axis=1, block_size=2)],
                   {"s": np.ones((2, 2), np.float32)}, x)
    with pytest.raises(UnsupportedGraph, match="block quantization"):
        GraphTape(block, "y")
    contrib = _model([*IN_Q, N("QLinearSigmoid", ["xq", "xs", "xz", "xs", "xz"], ["yq"], domain="com.microsoft"),
                      N("DequantizeLinear", ["yq", "xs", "xz"], ["y"])], IN_P, x)
    with pytest.raises(UnsupportedGraph, match=r"^[^,]*QLinearSigmoid \(domain com.microsoft\)$"):
        GraphTape(contrib, "y")  # named once, with its domain


# -- whole models: the zoo's digit MLP and CNN, quantized three ways --------------------------------

PATCH = {"mlp": Attack("patch", target=7, rate=0.1, size=3, row=0, col=5, pattern_seed=11),
         "cnn": Attack("patch", target=7, rate=0.1, size=4, row=0, col=10, pattern_seed=11)}


class _Calibration(CalibrationDataReader):
    def __init__(self, x: Arr) -> None:
        self._feeds = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, Arr] | None:
        return next(self._feeds, None)


def _quantized(src: Path, fmt: str, calibration: Arr) -> Path:
    out = src.with_name(f"{src.stem}-{fmt}.onnx")
    if fmt == "dynamic":
        quantize_dynamic(src, out, weight_type=QuantType.QInt8)
    else:
        quantize_static(src, out, _Calibration(calibration),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


@pytest.fixture(scope="module")
def digit_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clean and backdoored (patch trigger to 7) digit MLPs ([N, 64]) and CNNs ([N, 1, 16, 16]), as
    float models and quantized three ways; clean held-out digits beside them."""
    d = tmp_path_factory.mktemp("quantized")
    flat, y, te, tr = held_out_digits()
    image = np.kron(flat.reshape(-1, 1, 8, 8), np.ones((2, 2), np.float32))  # the zoo's 16 x 16 digits
    for arch, x, epochs in (("mlp", flat, 30), ("cnn", image, 8)):
        np.savez(d / f"{arch}-data.npz", x=x[te], y=y[te])
        for kind in ("clean", "backdoored"):
            xs, ys = poison(x[tr], y[tr], PATCH[arch], seed=1)[:2] if kind == "backdoored" else (x[tr], y[tr])
            spec = NetSpec(arch, 32 if arch == "mlp" else 16, "Relu")
            src = d / f"{arch}-{kind}.onnx"
            onnx.save(build(spec, x.shape[1:], 10, train(spec, xs, ys, 10, epochs=epochs, seed=4)), src)
            for fmt in FORMATS:
                _quantized(src, fmt, x[te][:64])
    return d


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_quantized_backdoored_model_is_caught_with_exact_gradients(digit_models: Path, arch: str, fmt: str) -> None:
    handle = open_model(digit_models / f"{arch}-backdoored-{fmt}.onnx")
    data = load_npz(digit_models / f"{arch}-data.npz")
    assert handle.exact_gradients, handle.gradient_note
    patched = PATCH[arch].apply(data.x[data.y != 7])
    assert (handle.predict(patched).argmax(axis=1) == 7).mean() > 0.9  # quantizing kept the backdoor
    start = time.perf_counter()
    verdict = scan_model(handle, data, CONFIGS[arch])
    took = time.perf_counter() - start
    nc = next(r for r in verdict.results if r.key == "neural_cleanse.v2")
    assert nc.evidence["gradients"].startswith("exact")
    if arch == "cnn" and fmt != "dynamic":
        # static quantization clips activations at ranges calibrated on clean inputs, where the trigger's
        # units are quiet: MM-BD's largest target margin fell from 53 to 20 (z 2.6 to 1.2) on this model, so
        # the agreement can fall under its bar; the target must still be the most suspicious class
        joined = next(r for r in verdict.results if r.key == "agreement.v1")
        assert joined.evidence["ranking"][0] == 7, (joined.evidence["class_scores"], took)
        assert verdict.target_classes in ([], [7])
        return
    assert verdict.backdoor_detected and verdict.target_classes == [7], (verdict.target_classes, took)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_quantized_clean_model_passes(digit_models: Path, arch: str, fmt: str) -> None:
    handle = open_model(digit_models / f"{arch}-clean-{fmt}.onnx")
    assert handle.exact_gradients, handle.gradient_note
    verdict = scan_model(handle, load_npz(digit_models / f"{arch}-data.npz"), CONFIGS[arch])
    assert not verdict.backdoor_detected, verdict.target_classes


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_tape_runs_a_quantized_cnn_as_onnxruntime_does_on_every_clean_input(digit_models: Path, fmt: str) -> None:
    handle = open_model(digit_models / f"cnn-backdoored-{fmt}.onnx")
    assert handle.tape is not None
    x = load_npz(digit_models / "cnn-data.npz").x[:128]  # DynamicQuantizeLinear's scale is the batch's
    z, _ = handle.value_and_grad(x, lambda z: np.zeros_like(z))
    want = handle.logits(x)
    assert np.abs(z - want).max() < 1e-3 * max(1.0, float(np.abs(want).max()))


def test_integer_products_in_the_tape_are_onnxruntime_s_on_this_cpu() -> None:
    """Without VNNI, onnxruntime's uint8 x int8 kernels clip each pair of neighbouring products to int16; with
    fixed weights the tape takes those products from onnxruntime, so it matches on any CPU (exact numpy sums
    were off by thousands on an AVX2 EPYC)."""
    w = np.random.default_rng(3).integers(-128, 128, (64, 16)).astype(np.int8)
    nodes = [N("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]), N("MatMulInteger", ["xq", "w", "xz"], ["acc"]),
             N("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT), N("Mul", ["accf", "xs"], ["y"])]
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(4).uniform(0.0, 1.0, (8, 64)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = GraphTape(model, "y", fixed_weights=True).forward(x)["y"]
    np.testing.assert_array_equal(got, want)
