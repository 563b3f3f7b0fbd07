from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from services.supply_chain.adapters.filesystem import load_artifact
from services.supply_chain.adapters.onnx_inspector import inspect_onnx
from services.supply_chain.adapters.serialization import inspect_artifact
from services.supply_chain.domain.policy import DEFAULT_ONNX_DOMAINS, SupplyChainPolicy

from .conftest import onnx_model, with_external

pytestmark = pytest.mark.unit

WEIGHTS = np.arange(16, dtype=np.float32)


def save_external(directory: Path, location: str, data_at: Path | None = None) -> Path:
    model = onnx_model(WEIGHTS)
    with_external(model, location)
    if data_at is not None:
        data_at.parent.mkdir(parents=True, exist_ok=True)
        data_at.write_bytes(WEIGHTS.tobytes())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    onnx.save(model, path)
    return path


def problems(path: Path) -> list[str]:
    return inspect_onnx(path, 2**31 - 1, DEFAULT_ONNX_DOMAINS).problems


def test_external_data_beside_the_model_is_accepted_and_classified(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    save_external(model_dir, "weights.bin", model_dir / "weights.bin")
    artifact = load_artifact(str(model_dir), max_file_bytes=2**30, max_total_bytes=2**31, max_files=10)
    reports, onnx_ok = inspect_artifact(artifact, SupplyChainPolicy())
    assert {r.relpath: (r.fmt, r.problems) for r in reports} == {
        "model.onnx": ("onnx", []),
        "weights.bin": ("onnx-external-data", []),
    }
    assert onnx_ok == [model_dir / "model.onnx"]


def test_external_data_that_climbs_out_with_dot_dot_is_rejected(tmp_path: Path) -> None:
    path = save_external(tmp_path / "a" / "b" / "m", "../../secret.bin", tmp_path / "a" / "secret.bin")
    assert any("'..'" in p for p in problems(path))


def test_external_data_with_an_absolute_path_is_rejected(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m", str(tmp_path / "elsewhere.bin"), tmp_path / "elsewhere.bin")
    assert any("absolute" in p for p in problems(path))


def test_external_data_through_a_symlink_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "outside" / "passwd.bin"
    model_dir = tmp_path / "m"
    path = save_external(model_dir, "weights.bin", target)
    os.symlink(target, model_dir / "weights.bin")
    found = problems(path)
    assert any("symlink" in p or "outside the model directory" in p for p in found), found


def test_external_data_with_a_second_hard_link_is_rejected(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    path = save_external(model_dir, "weights.bin", model_dir / "weights.bin")
    os.link(model_dir / "weights.bin", tmp_path / "other-link.bin")
    assert any("single-link" in p for p in problems(path))


def test_external_data_whose_offset_and_length_run_past_the_file_is_rejected(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model = onnx_model(WEIGHTS)
    with_external(model, "weights.bin", offset=60)
    (model_dir).mkdir()
    (model_dir / "weights.bin").write_bytes(WEIGHTS.tobytes())
    onnx.save(model, model_dir / "model.onnx")
    assert any("outside the 64-byte file" in p for p in problems(model_dir / "model.onnx"))


@pytest.mark.parametrize("location", ["", "C:\\weights.bin", "sub\\..\\..\\x.bin"])
def test_empty_drive_and_backslash_locations_are_rejected(tmp_path: Path, location: str) -> None:
    path = save_external(tmp_path / "m", location)
    assert problems(path)


def test_a_node_from_an_unknown_custom_op_domain_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    onnx.save(onnx_model(WEIGHTS, domain="com.evil.ops", op_type="Exfiltrate"), path)
    found = problems(path)
    assert any("com.evil.ops" in p and "custom op" in p for p in found), found


def test_a_truncated_onnx_file_is_rejected_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model(WEIGHTS).SerializeToString()[:40])
    assert problems(path)


def test_an_onnx_file_over_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(onnx_model(WEIGHTS), path)
    assert "limit" in inspect_onnx(path, 16, DEFAULT_ONNX_DOMAINS).problems[0]


def test_an_onnx_model_led_by_an_unknown_field_is_still_inspected_as_onnx(tmp_path: Path) -> None:
    node = onnx.helper.make_node("Exfiltrate", ["X"], ["Y"], domain="com.evil.ops")
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("X", 1, [4])], [value("Y", 1, [4])])
    opsets = [onnx.helper.make_opsetid("com.evil.ops", 1), onnx.OperatorSetIdProto(version=17)]
    model = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=8)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"H\x01" + model.SerializeToString())  # field 9, varint 1: skipped by onnx and ORT
    assert "\x00" not in path.read_bytes().decode("utf-8")  # NUL-free UTF-8: it passed as a text file
    assert onnx.load(str(path)).graph.node[0].domain == "com.evil.ops"

    artifact = load_artifact(str(path), max_file_bytes=2**30, max_total_bytes=2**31, max_files=10)
    reports, _ = inspect_artifact(artifact, SupplyChainPolicy())
    assert reports[0].fmt == "onnx"
    assert any("com.evil.ops" in p and "custom op" in p for p in reports[0].problems), reports[0].problems


@pytest.mark.parametrize("marker", ["*/_ORT_MEM_ADDR_/*", "*/_ORT_NATIVE_ENDIAN_MEM_ADDR_/*"])
def test_an_onnxruntime_in_memory_address_marker_is_rejected_even_when_a_file_has_that_name(
    tmp_path: Path, marker: str
) -> None:
    # onnxruntime reads such a "location" as a raw memory address given by "offset"; recent releases
    # refuse it in a model file, older ones read process memory into the weights
    model_dir = tmp_path / "m"
    path = save_external(model_dir, marker, model_dir / marker)
    assert any("in-memory address" in p for p in problems(path)), problems(path)


def test_external_data_beside_a_single_file_artifact_is_rejected_as_outside_the_artifact(tmp_path: Path) -> None:
    # the artifact is model.onnx alone: weights.bin next to it is neither hashed, signed nor scanned,
    # and may be swapped after the verdict, yet onnxruntime would load it
    path = save_external(tmp_path, "weights.bin", tmp_path / "weights.bin")
    artifact = load_artifact(str(path), max_file_bytes=2**30, max_total_bytes=2**31, max_files=10)
    reports, onnx_ok = inspect_artifact(artifact, SupplyChainPolicy())
    found = [p for r in reports for p in r.problems]
    assert any("not part of the artifact" in p for p in found), found
    assert onnx_ok == []
