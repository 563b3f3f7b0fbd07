"""ONNX files parsed with ``load_external_data=False``; external data and op domains vetted before ORT.

External data rules (CVE-2024-27318 and the later symlink CVEs): a relative, non-empty location with
no ``..`` after normalising, whose real path stays inside the model directory, that is not a
symlink, is a regular file with one hard link, and holds ``offset + length`` bytes; never one of
onnxruntime's in-memory address markers, even where a file of that name exists.
"""

from __future__ import annotations

import math
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

_EXTERNAL = onnx.TensorProto.EXTERNAL
# "*/_ORT_MEM_ADDR_/*" and kin: onnxruntime reads "offset" as a raw pointer, not a file position
ORT_MARKER_PREFIX = "*/_ORT_"


@dataclass
class OnnxInspection:
    problems: list[str] = field(default_factory=list)
    external_files: set[Path] = field(default_factory=set)  # real paths of vetted external data
    domains: set[str] = field(default_factory=set)


def _graph_items(graph: Any) -> Iterator[tuple[str, Any]]:
    for tensor in graph.initializer:
        yield "tensor", tensor
    for sparse in graph.sparse_initializer:
        yield "tensor", sparse.values
        yield "tensor", sparse.indices
    for node in graph.node:
        yield from _node_items(node)


def _node_items(node: Any) -> Iterator[tuple[str, Any]]:
    yield "node", node
    for attr in node.attribute:
        if attr.HasField("t"):
            yield "tensor", attr.t
        yield from (("tensor", t) for t in attr.tensors)
        if attr.HasField("sparse_tensor"):
            yield from (("tensor", attr.sparse_tensor.values), ("tensor", attr.sparse_tensor.indices))
        for graph in [attr.g] if attr.HasField("g") else []:
            yield from _graph_items(graph)
        for graph in attr.graphs:
            yield from _graph_items(graph)


def _expected_bytes(tensor: Any) -> int | None:
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    return int(math.prod(tensor.dims) * itemsize)


def _check_external(tensor: Any, model_dir: Path, result: OnnxInspection) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    where = f"tensor {tensor.name[:80]!r}"
    location = info.get("location", "")
    normal = posixpath.normpath(location) if location else ""
    if not location or "\x00" in location:
        result.problems.append(f"{where}: empty external data location")
        return
    if location.startswith(ORT_MARKER_PREFIX):
        result.problems.append(f"{where}: {location[:60]!r} is an onnxruntime in-memory address marker")
        return
    if location.startswith(("/", "\\")) or os.path.isabs(location) or ":" in location or "\\" in location:
        result.problems.append(f"{where}: absolute or drive external data path {location[:120]!r}")
        return
    if normal == ".." or normal.startswith("../") or ".." in location.split("/"):
        result.problems.append(f"{where}: external data path escapes with '..': {location[:120]!r}")
        return
    candidate = model_dir / normal
    real, base = os.path.realpath(candidate), os.path.realpath(model_dir)
    if os.path.commonpath([real, base]) != base:
        result.problems.append(f"{where}: external data resolves outside the model directory")
        return
    try:
        info_stat = os.lstat(candidate)
    except OSError:
        result.problems.append(f"{where}: external data file {location[:120]!r} missing")
        return
    if stat.S_ISLNK(info_stat.st_mode) or real != os.path.join(base, normal):
        result.problems.append(f"{where}: external data {location[:120]!r} is or passes through a symlink")
    elif not stat.S_ISREG(info_stat.st_mode) or info_stat.st_nlink != 1:
        result.problems.append(f"{where}: external data {location[:120]!r} is not a regular single-link file")
    else:
        _check_span(where, info, _expected_bytes(tensor), info_stat.st_size, result)
        result.external_files.add(Path(real))


def _check_span(where: str, info: dict[str, str], expected: int | None, size: int, result: OnnxInspection) -> None:
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else expected
    except ValueError:
        result.problems.append(f"{where}: non-integer offset or length")
        return
    if offset < 0 or (length is not None and (length < 0 or offset + length > size)):
        result.problems.append(f"{where}: offset {offset} + length {length} outside the {size}-byte file")
    elif expected is not None and length is not None and length != expected:
        result.problems.append(f"{where}: length {length} but dtype and dims need {expected}")


def inspect_onnx(path: Path, max_bytes: int, allowed_domains: tuple[str, ...]) -> OnnxInspection:
    """Parse ``path`` without external data and vet every external reference and operator domain."""
    result = OnnxInspection()
    if path.stat().st_size > max_bytes:
        result.problems.append(f"ONNX file is {path.stat().st_size} bytes, limit {max_bytes}")
        return result
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: a parse failure is a rejection
        result.problems.append(f"not a parseable ONNX model: {type(exc).__name__}")
        return result
    if model.ir_version < 3 or not model.HasField("graph"):
        result.problems.append("not an ONNX model (no graph or IR version < 3)")
        return result
    local = {(f.domain, f.name) for f in model.functions}
    items = list(_graph_items(model.graph))
    for function in model.functions:
        for node in function.node:
            items += list(_node_items(node))
    for kind, item in items:
        if kind == "tensor" and item.data_location == _EXTERNAL:
            _check_external(item, path.parent, result)
        elif kind == "node" and (item.domain, item.op_type) not in local:
            result.domains.add(item.domain)
    result.domains |= {o.domain for o in model.opset_import if o.domain not in {d for d, _ in local}}
    for domain in sorted(result.domains - set(allowed_domains)):
        result.problems.append(f"operator domain {domain[:80]!r} is not on the allowlist (custom op)")
    return result
