"""The onnxruntime ModelHandle: output choice, probabilities vs logits, activations, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.datasets import DataError, load_npz
from services.scanner.adapters.onnx_model import ModelError, open_model
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.service_layer.scan import open_model_and_data, scan_model

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit


def test_handle_satisfies_the_domain_protocol(zoo: Zoo) -> None:
    assert isinstance(open_model(zoo.clean_model), ModelHandle)


def test_first_float_class_output_is_used_and_a_named_output_can_be_chosen(zoo: Zoo) -> None:
    x = load_npz(zoo.clean_npz).x[:20]
    auto = open_model(zoo.backdoored_model)  # outputs: label (int64), probabilities, logits
    named = open_model(zoo.backdoored_model, output="logits")
    assert auto.output_name == "probabilities" and auto.outputs_probabilities
    assert named.output_name == "logits" and not named.outputs_probabilities
    np.testing.assert_allclose(auto.predict(x), named.predict(x), atol=1e-5)
    np.testing.assert_allclose(auto.predict(x).sum(axis=1), 1.0, atol=1e-5)


def test_penultimate_layer_is_listed_last_and_activations_are_flat(zoo: Zoo) -> None:
    model = open_model(zoo.clean_model)
    assert model.layers()[-1] == "penultimate"
    acts = model.activations(load_npz(zoo.clean_npz).x[:7], "penultimate")
    assert acts.shape == (7, 32)
    with pytest.raises(ModelError, match="unknown layer"):
        model.activations(load_npz(zoo.clean_npz).x[:7], "nope")


def test_unknown_output_name_and_non_onnx_files_are_clear_errors(zoo: Zoo, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not in model outputs"):
        open_model(zoo.clean_model, output="missing")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x80\x04not a model")
    with pytest.raises(ModelError):
        open_model(junk)
    with pytest.raises(ModelError, match="not found"):
        open_model(tmp_path / "absent.onnx")


def test_npz_loader_refuses_pickles_and_checks_shapes(tmp_path: Path) -> None:
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, np.int64))
    with pytest.raises(DataError, match="pickle"):
        load_npz(obj)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="expects"):
        load_npz(bad, input_shape=(64,))
    nolabels = tmp_path / "nolabels.npz"
    np.savez(nolabels, x=np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match="lacks"):
        load_npz(nolabels)


def test_npz_loader_reads_integer_pixels_and_whole_number_float_labels_as_values(tmp_path: Path) -> None:
    # uint8 images and labels written as floats (as pandas does) are common; their values are kept
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.array([[0, 128, 255], [3, 4, 5]], np.uint8), y=np.array([1.0, 0.0]))
    data = load_npz(path, input_shape=(3,), num_classes=2)
    assert data.x.dtype == np.float32 and data.x.tolist() == [[0.0, 128.0, 255.0], [3.0, 4.0, 5.0]]
    assert data.y.dtype == np.int64 and data.y.tolist() == [1, 0]


@pytest.mark.parametrize(("y", "needle"), [(np.array([0.0, 0.5]), "0.5"), (np.array([0.0, np.nan]), "nan"),
                                           (np.array(["a", "b"]), "<U1")])
def test_npz_loader_refuses_labels_that_are_not_whole_numbers(tmp_path: Path, y: np.ndarray, needle: str) -> None:
    path = tmp_path / "labels.npz"
    np.savez(path, x=np.zeros((2, 3), np.float32), y=y)
    with pytest.raises(DataError, match=needle):
        load_npz(path)


def test_a_tape_that_computes_a_known_op_differently_falls_back_to_estimated_gradients(
        zoo: Zoo, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.scanner.adapters import onnx_autodiff

    exact = open_model(zoo.clean_model)
    assert exact.exact_gradients and "checked against onnxruntime" in exact.gradient_note
    relu_backward = onnx_autodiff.RULES["Relu"][1]
    monkeypatch.setitem(onnx_autodiff.RULES, "Relu", (lambda i, a: i[0], relu_backward))  # wrong on purpose
    model = open_model(zoo.clean_model)
    assert not model.exact_gradients and "differs from onnxruntime" in model.gradient_note
    x = load_npz(zoo.clean_npz).x[:5]
    np.testing.assert_allclose(model.predict(x), exact.predict(x), atol=1e-6)  # onnxruntime still predicts


def test_a_double_precision_model_is_scanned_like_a_float_one(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 1, (6, 5)), rng.normal(0, 1, (5, 3))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["z"]), helper.make_node("Softmax", ["z"], ["p"], axis=1)],
        "double", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 6])],
        [helper.make_tensor_value_info("p", TensorProto.DOUBLE, ["N", 3])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "double.onnx")
    model = open_model(tmp_path / "double.onnx")
    x = rng.uniform(0, 1, (4, 6)).astype(np.float32)
    expected = np.exp(np.maximum(x @ w1, 0) @ w2)
    np.testing.assert_allclose(model.predict(x), expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    assert model.num_classes == 3 and model.exact_gradients and model.activations(x, model.layers()[-1]).shape == (4, 5)


def test_symbolic_image_dims_are_filled_from_the_data(tmp_path: Path) -> None:
    # a PyTorch export with dynamic height and width: the data says what the scan feeds it
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "W"),
                               numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "G")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "dyn.onnx")
    np.savez(tmp_path / "d.npz", x=rng.random((30, 1, 12, 10)).astype(np.float32), y=rng.integers(0, 3, 30))
    with pytest.raises(ModelError, match="symbolic non-batch dims"):
        open_model(tmp_path / "dyn.onnx")
    with pytest.raises(ModelError, match="does not take"):
        open_model(tmp_path / "dyn.onnx", sample_shape=(3, 12, 10))
    handle, data = open_model_and_data(tmp_path / "dyn.onnx", tmp_path / "d.npz")
    assert handle.input_shape == (1, 12, 10) and handle.exact_gradients and len(data) == 30
    assert handle.macs_per_sample >= 12 * 10 * 4 * 9  # the conv counted at the data's size, not 1 x 1


def _batch_of_one(flat_model: Path, path: Path, target: list[int], as_constant_node: bool = False) -> Path:
    """The zoo MLP as a traced export: input [1, 1, 8, 8], a Reshape to a constant ``target`` shape."""
    inner = onnx.load(str(flat_model))
    shape = numpy_helper.from_array(np.array(target, np.int64), "shape")
    front = [helper.make_node("Constant", [], ["shape"], value=shape)] if as_constant_node else []
    front.append(helper.make_node("Reshape", ["image", "shape"], ["input"]))
    outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, [1, *[
        d.dim_value for d in o.type.tensor_type.shape.dim[1:]]]) for o in inner.graph.output]
    graph = helper.make_graph([*front, *inner.graph.node], "traced",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])], outputs,
                              [*([] if as_constant_node else [shape]), *inner.graph.initializer])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("as_constant_node", [False, True])
def test_a_batch_of_one_export_is_scanned_on_a_copy_with_a_free_batch(zoo: Zoo, tmp_path: Path,
                                                                        as_constant_node: bool) -> None:
    path = _batch_of_one(zoo.backdoored_model, tmp_path / "b1.onnx", [1, 64], as_constant_node)
    flat = load_npz(zoo.clean_npz)
    handle = open_model(path)
    x = flat.x.reshape(-1, 1, 8, 8)
    assert handle.input_shape == (1, 8, 8) and handle.exact_gradients and handle.notes
    assert np.allclose(handle.predict(x), open_model(zoo.backdoored_model).predict(flat.x), atol=1e-5)
    verdict = scan_model(handle, Dataset(x, flat.y))
    assert verdict.backdoor_detected and verdict.target_classes == [ATTACK.target]
    assert any("batch of 1" in n for n in verdict.notes)


def test_a_batch_of_one_the_graph_depends_on_is_refused_clearly(zoo: Zoo, tmp_path: Path) -> None:
    path = _batch_of_one(zoo.backdoored_model, tmp_path / "b1.onnx", [64, 1])  # batch folded into features
    with pytest.raises(ModelError, match="export it with a dynamic batch axis"):
        open_model(path)


def _half(path: Path, out: Path) -> Path:
    """``path`` in float16 throughout (weights, input, outputs), as exported for half-precision serving."""
    model = onnx.load(str(path))
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in [*model.graph.input, *model.graph.output]:
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, out)
    return out


def test_a_float16_model_is_scanned_with_exact_gradients_and_the_same_verdict(zoo: Zoo, tmp_path: Path) -> None:
    handle = open_model(_half(zoo.backdoored_model, tmp_path / "half.onnx"))
    full = open_model(zoo.backdoored_model)
    data = load_npz(zoo.clean_npz)
    assert handle.exact_gradients and handle.input_dtype == np.float16
    assert np.allclose(handle.predict(data.x), full.predict(data.x), atol=2e-2)
    assert handle.activations(data.x[:5], handle.layers()[-1]).shape[0] == 5
    verdict = scan_model(handle, data)
    assert verdict.backdoor_detected and verdict.target_classes == [ATTACK.target]


def test_a_vision_transformer_gets_exact_gradients(tmp_path: Path) -> None:
    # self-attention (MatMul, Transpose, Softmax), LayerNormalization and an Erf GELU, as exported transformers
    from benchmarks.zoo.nets import NetSpec, build

    onnx.save(build(NetSpec("vit", 16), (1, 16, 16), 10, seed=3), tmp_path / "vit.onnx")
    handle = open_model(tmp_path / "vit.onnx")
    assert handle.exact_gradients, handle.gradient_note
    x = np.random.default_rng(0).random((4, 1, 16, 16)).astype(np.float32)

    def towards_3(z: np.ndarray) -> np.ndarray:
        return (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) - np.eye(10, dtype=np.float32)[3]).astype(np.float32)

    _, g = handle.value_and_grad(x, towards_3)
    eps, probe = 1e-2, np.zeros_like(x)
    probe[0, 0, 5, 7] = eps
    loss = [float(-np.log(handle.predict(x + s * probe)[0, 3])) for s in (1, -1)]
    assert g[0, 0, 5, 7] == pytest.approx((loss[0] - loss[1]) / (2 * eps), rel=0.05, abs=1e-4)
