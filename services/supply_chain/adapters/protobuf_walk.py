"""A bounded walk over protobuf wire format, to recognise ONNX without parsing it."""

from __future__ import annotations

from typing import IO


def _varint(stream: IO[bytes]) -> int | None:
    value = 0
    for shift in range(0, 64, 7):
        byte = stream.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def walks_as_onnx(stream: IO[bytes], size: int, budget: int = 100_000) -> bool:
    """True when the bytes are protobuf fields to the end, with a top-level graph (ONNX field 7).

    onnx and onnxruntime skip unknown fields in any order, so a model may start with any tag and the
    first byte alone does not say ONNX. Past ``budget`` fields the walk answers True: the ONNX parser,
    whose failure is a rejection, decides instead.
    """
    groups: list[int] = []
    graph = False
    for _ in range(budget):
        if stream.tell() >= size:
            return graph and not groups
        tag = _varint(stream)
        if tag is None or tag >> 3 == 0 or (tag & 7) in (6, 7):
            return False
        field, wire = tag >> 3, tag & 7
        if wire == 0 and _varint(stream) is None:
            return False
        if wire == 3:
            groups.append(field)
        elif wire == 4 and (not groups or groups.pop() != field):
            return False
        skip = _varint(stream) if wire == 2 else {1: 8, 5: 4}.get(wire, 0)
        if skip is None or stream.tell() + skip > size:
            return False
        stream.seek(skip, 1)
        graph = graph or (field == 7 and wire == 2 and not groups)
    return True
