"""Channels-last image inputs ([N, H, W, C], as tf2onnx exports Keras models) are scanned as channels-first:
masks over the image plane, gradients and data transposed at the boundary, trigger files in the model's
own layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import OnnxModel, open_model
from services.scanner.domain.input_layout import (
    ChannelsFirstView,
    looks_channels_last,
    resolve_layout,
    to_channels_last,
    trigger_in_model_layout,
)
from services.scanner.domain.model import Dataset
from services.scanner.entrypoints.cli import register
from services.scanner.service_layer.scan import ScanConfig, scan_model

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit
SIDE, C = 8, 3


@pytest.mark.parametrize(("shape", "last"), [((32, 32, 3), True), ((28, 28, 1), True), ((16, 16, 4), True),
                                             ((3, 32, 32), False), ((1, 28, 28), False), ((64,), False),
                                             ((3, 3, 3), False), ((2, 5, 3), False), ((8, 8, 8), False)])
def test_channels_last_is_told_by_where_the_channel_sized_axis_is(shape: tuple[int, ...], last: bool) -> None:
    assert looks_channels_last(shape) is last
    assert resolve_layout(shape) == ("flat" if len(shape) != 3 else "channels_last" if last else "channels_first")


def test_the_caller_can_name_the_layout_and_a_wrong_name_is_refused() -> None:
    assert resolve_layout((8, 8, 8), "channels_last") == "channels_last"
    assert resolve_layout((32, 32, 3), "channels_first") == "channels_first"
    assert resolve_layout((64,), "channels_last") == "flat"
    with pytest.raises(ValueError, match="unknown input layout"):
        resolve_layout((32, 32, 3), "nhwc")


def _channels_last(flat_model: Path, path: Path) -> Path:
    """The zoo's flat digit MLP behind an [N, 8, 8, 3] colour input: the grey image is the channels' mean."""
    inner = onnx.load(str(flat_model))
    nodes = [helper.make_node("Transpose", ["image"], ["chw"], perm=[0, 3, 1, 2]),
             helper.make_node("ReduceMean", ["chw"], ["grey"], axes=[1], keepdims=0),
             helper.make_node("Reshape", ["grey", "flat_shape"], ["input"]), *inner.graph.node]
    graph = helper.make_graph(nodes, "hwc", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                           ["N", SIDE, SIDE, C])],
                              list(inner.graph.output),
                              [numpy_helper.from_array(np.array([-1, SIDE * SIDE], np.int64), "flat_shape"),
                               *inner.graph.initializer])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _colour(flat: np.ndarray, seed: int) -> np.ndarray:
    """[N, 64] grey digits as [N, 8, 8, 3] colour images with the same channel mean."""
    grey = flat.reshape(-1, SIDE, SIDE, 1)
    tint = np.random.default_rng(seed).uniform(-0.05, 0.05, (len(flat), 1, 1, C)).astype(np.float32)
    return (grey + tint - tint.mean(axis=3, keepdims=True)).astype(np.float32)


def test_the_view_transposes_inputs_and_gradients_exactly(zoo: Zoo, tmp_path: Path) -> None:
    inner = open_model(_channels_last(zoo.backdoored_model, tmp_path / "hwc.onnx"))
    view = ChannelsFirstView(inner)
    assert view.input_shape == (C, SIDE, SIDE) and view.num_classes == inner.num_classes
    x = np.random.default_rng(0).random((5, C, SIDE, SIDE)).astype(np.float32)
    assert np.allclose(view.predict(x), inner.predict(to_channels_last(x)))

    def cotangent(z: np.ndarray) -> np.ndarray:
        return np.eye(z.shape[1], dtype=np.float32)[np.zeros(len(z), int)]

    _, g_view = view.value_and_grad(x, cotangent)
    _, g_inner = inner.value_and_grad(to_channels_last(x), cotangent)
    assert g_view.shape == x.shape and np.allclose(g_view, np.transpose(g_inner, (0, 3, 1, 2)))


def test_a_channels_last_backdoor_is_caught_and_its_trigger_file_flips_the_model(zoo: Zoo, tmp_path: Path) -> None:
    model = _channels_last(zoo.backdoored_model, tmp_path / "hwc.onnx")
    flat = load_npz(zoo.clean_npz)
    np.savez(tmp_path / "clean.npz", x=_colour(flat.x, 0), y=flat.y)
    scanner_cli = typer.Typer()
    register(scanner_cli)
    result = CliRunner().invoke(scanner_cli, ["scan", str(model), "--clean-data", str(tmp_path / "clean.npz"),
                                              "--report", str(tmp_path / "r.json"),
                                              "--triggers", str(tmp_path / "t.npz")])
    assert result.exit_code == 1, result.output
    assert f"target_classes=[{ATTACK.target}]" in result.output and "scanned as [3, 8, 8]" in result.output

    with np.load(tmp_path / "t.npz") as triggers:
        mask, pattern = triggers[f"mask_{ATTACK.target}"], triggers[f"pattern_{ATTACK.target}"]
    assert mask.shape == pattern.shape == (SIDE, SIDE, C)
    assert np.allclose(mask, mask[..., :1])  # one mask over the image, shared by the channels
    handle = open_model(model)
    x = _colour(flat.x, 1)
    stamped = (1 - mask) * x + mask * pattern
    others = flat.y != ATTACK.target
    flipped = np.argmax(handle.predict(stamped[others]), axis=1) == ATTACK.target
    assert flipped.mean() > 0.8


def test_a_channels_last_model_scanned_as_channels_first_is_told_apart_in_the_verdict(zoo: Zoo) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6 * 6 * 3, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])], "hwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    handle = OnnxModel(model)
    x = rng.random((120, 6, 6, 3)).astype(np.float32)
    data = Dataset(x, np.argmax(handle.predict(x), axis=1).astype(np.int64))
    quick = {"neural_cleanse.v2": {"steps": 20}, "mmbd.v2": {"steps": 5}}
    auto = scan_model(handle, data, ScanConfig(params=quick))
    assert auto.input_layout == "channels_last" and auto.to_dict()["input_layout"] == "channels_last"
    assert any("scanned as [3, 6, 6]" in n for n in auto.notes)
    nc = next(r for r in auto.results if r.key == "neural_cleanse.v2")
    assert all(m.shape == (6, 6) for m, _ in nc.triggers.values())
    forced = scan_model(handle, data, ScanConfig(params=quick, input_layout="channels_first"))
    assert forced.input_layout == "channels_first" and not any("channels-last" in n for n in forced.notes)


def test_triggers_keep_their_layout_for_channels_first_and_flat_models() -> None:
    mask, pattern = np.ones((4, 5), np.float32), np.zeros((3, 4, 5), np.float32)
    for layout in ("channels_first", "flat"):
        m, p = trigger_in_model_layout(mask, pattern, layout)
        assert m.shape == (4, 5) and p.shape == (3, 4, 5)
    m, p = trigger_in_model_layout(mask, pattern, "channels_last")
    assert m.shape == p.shape == (4, 5, 3)


def test_remediation_reverses_a_channels_last_trigger_in_the_models_layout(zoo: Zoo, tmp_path: Path) -> None:
    from services.remediation.domain.fine_pruning import RemediationConfig
    from services.remediation.service_layer.rounds import reversed_trigger

    model = _channels_last(zoo.backdoored_model, tmp_path / "hwc.onnx")
    flat = load_npz(zoo.clean_npz)
    np.savez(tmp_path / "clean.npz", x=_colour(flat.x, 0), y=flat.y)
    trigger = reversed_trigger(model, tmp_path / "clean.npz", RemediationConfig(), seconds=60.0)
    assert trigger.target == ATTACK.target and trigger.mask.shape == trigger.pattern.shape == (SIDE, SIDE, C)
    trigger.check_shape((SIDE, SIDE, C))
    others = flat.y != ATTACK.target
    flipped = np.argmax(open_model(model).predict(trigger.apply(_colour(flat.x, 1)[others])), axis=1)
    assert np.mean(flipped == ATTACK.target) > 0.8
