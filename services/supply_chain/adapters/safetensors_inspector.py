"""safetensors header: bounded length, JSON without duplicate keys, dtypes and shapes, offsets that tile the data."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def _tensor_problems(name: str, spec: Any) -> tuple[list[str], tuple[int, int] | None]:
    if not isinstance(spec, dict) or set(spec) - {"dtype", "shape", "data_offsets"}:
        return [f"tensor {name[:80]!r}: malformed entry"], None
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        return [f"tensor {name[:80]!r}: unknown dtype {str(dtype)[:20]!r}"], None
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):  # bool is an int
        return [f"tensor {name[:80]!r}: malformed shape"], None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        return [f"tensor {name[:80]!r}: malformed data_offsets"], None
    begin, end = offsets
    if not 0 <= begin <= end or end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        return [f"tensor {name[:80]!r}: offsets {offsets} do not match dtype and shape"], None
    return [], (begin, end)


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice; parsers disagree on which entry wins."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKeyError(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def inspect_safetensors(path: Path, max_header: int) -> list[str]:
    """Validate the header without touching tensor bytes; empty list means well-formed."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > max_header or length > size - 8:
            return [f"header length {length} exceeds min({max_header}, file length - 8)"]
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
    except DuplicateKeyError as exc:  # Python keeps the last entry, a first-wins reader loads the other
        return [f"header names {str(exc)[:80]!r} twice (readers disagree on which entry wins)"]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        return [f"header is not JSON: {exc}"[:200]]
    if not isinstance(header, dict):
        return ["header is not a JSON object"]
    metadata = header.pop("__metadata__", {})
    problems = (
        []
        if isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        else ["__metadata__ must map strings to strings"]
    )
    spans = []
    for name, spec in header.items():
        found, span = _tensor_problems(name, spec)
        problems += found
        if span is not None:
            spans.append(span)
    cursor = 0
    for begin, end in sorted(spans):
        if begin != cursor:
            problems.append(f"data offsets leave a gap or overlap at byte {cursor}")
            break
        cursor = end
    if not problems and cursor != size - 8 - length:
        problems.append(f"tensors cover {cursor} bytes but the data section has {size - 8 - length}")
    return problems
