"""Columnar wire value and CloudEvents binary-mode headers of one ``telemetry.predictions.v1`` message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import orjson
from numpy.typing import NDArray

from services.telemetry.client.buffer import Chunk
from services.telemetry.client.settings import CE_TYPE
from services.telemetry.domain.signature import TRIGGER_MARK

Headers = list[tuple[str, bytes]]


def encode_message(
    chunks: list[Chunk], *, server_id: str, source: str,
    strip: NDArray[np.float64] | None = None, marks: list[str] | None = None,
    correlation_id: str | None = None,
) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) for chunks of one model version.

    Args:
        chunks: predictions of one (model, version, n_classes) key, oldest first.
        server_id: the producing server.
        source: CloudEvents ``source``.
        strip: STRIP entropy per prediction [N] (NaN where not computed), or None.
        marks: trigger-library match per prediction ("" for none), appended to ``sig``.
        correlation_id: CloudEvents ``correlationid`` (default: the batch id).
    """
    model, version, n_classes = chunks[0].key
    batch_id = uuid.uuid4().hex
    sig = [s for c in chunks for s in c.sig]
    if marks is not None:
        sig = [s + TRIGGER_MARK + m if m else s for s, m in zip(sig, marks, strict=True)]
    value = {
        "model": model, "version": version, "server_id": server_id, "batch_id": batch_id,
        "ids": [i for c in chunks for i in c.ids],
        "ts": np.concatenate([c.ts for c in chunks]),
        "pred": np.concatenate([c.pred for c in chunks]),
        "conf": np.concatenate([c.conf for c in chunks]),
        "entropy": np.concatenate([c.entropy for c in chunks]),
        "sig": sig,
        "strip": strip,  # orjson writes NaN as null
        "n_classes": n_classes,
    }
    headers: Headers = [
        ("ce_id", batch_id.encode()), ("ce_source", source.encode()), ("ce_type", CE_TYPE.encode()),
        ("ce_specversion", b"1.0"),
        ("ce_time", datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()),
        ("ce_subject", f"{model}/{version}".encode()),
        ("ce_correlationid", (correlation_id or batch_id).encode()),
        ("content-type", b"application/json"),
    ]
    return model.encode(), orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), headers
