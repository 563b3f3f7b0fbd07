"""A columnar batch of predictions (the ``telemetry.predictions.v1`` value) as numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_COLUMNS = ("ids", "ts", "pred", "conf", "entropy", "sig", "strip")
MAX_CLASSES = 100_000  # bounds the per-class state a single message can make the monitor allocate


# Unix time in seconds stays under 1e11 until the year 5138; values above it are milliseconds (1.7e12 now),
# microseconds (1.7e15) or nanoseconds (1.7e18), which plain clients send as often as seconds
_UNIT_DIVISORS = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))


def event_seconds(ts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Event times in Unix seconds, whichever of seconds, ms, µs or ns each value was sent in."""
    if not (ts >= _UNIT_DIVISORS[-1][0]).any():
        return ts
    out = ts.copy()
    for bound, divisor in _UNIT_DIVISORS:  # largest unit first; each value divided once
        scaled = out >= bound
        out[scaled] = out[scaled] / divisor
    return out


@dataclass(frozen=True)
class PredictionBatch:
    """Many predictions of one model version; every array has length N."""

    model: str
    version: str
    server_id: str
    batch_id: str
    n_classes: int
    ids: list[str]
    ts: NDArray[np.float64]
    pred: NDArray[np.int64]
    conf: NDArray[np.float64]
    entropy: NDArray[np.float64]
    sig: list[str]
    strip: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> PredictionBatch:
        """Validate and convert a decoded wire value; raises ``ValueError`` naming the bad field.

        Types are checked before numpy sees a column: ``np.asarray`` would otherwise turn ``null``
        into NaN, ``"3"`` into 3, ``3.7`` into class 3 and ``true`` into class 1 without a word.
        """
        ids, sig = _strings(value["ids"], "ids"), _strings(value["sig"], "sig")
        n_classes = integer(value["n_classes"], "n_classes", 2, MAX_CLASSES)
        ts, pred, conf, entropy = (_numbers(value[name], name) for name in ("ts", "pred", "conf", "entropy"))
        strip = None if value.get("strip") is None else _numbers(value["strip"], "strip", nulls=True)
        n = len(ids)
        for name, column in zip(_COLUMNS, (ids, ts, pred, conf, entropy, sig, strip), strict=True):
            if column is not None and len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} values, ids has {n}")
        if n and (pred.min() < 0 or pred.max() >= n_classes or (pred != np.floor(pred)).any()):
            raise ValueError(f"pred values must lie in [0, n_classes={n_classes}) and be integers; "
                             f"got {pred.min():g}..{pred.max():g}")
        if (entropy < 0).any():
            raise ValueError("column 'entropy' must hold entropies >= 0")
        return cls(
            model=text(value, "model"), version=text(value, "version"), server_id=text(value, "server_id"),
            batch_id=text(value, "batch_id"), n_classes=n_classes, ids=ids, ts=ts, pred=pred.astype(np.int64),
            conf=conf, entropy=entropy, sig=sig, strip=strip,
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-able wire value (NaN STRIP entries become ``None``)."""
        strip = None if self.strip is None else [None if v != v else v for v in self.strip.tolist()]
        return {
            "model": self.model, "version": self.version, "server_id": self.server_id,
            "batch_id": self.batch_id, "ids": self.ids, "ts": self.ts.tolist(), "pred": self.pred.tolist(),
            "conf": self.conf.tolist(), "entropy": self.entropy.tolist(), "sig": self.sig, "strip": strip,
            "n_classes": self.n_classes,
        }


def text(value: Mapping[str, Any], name: str) -> str:
    """A required non-empty string field (``null`` must not become the version ``"None"``)."""
    raw = value[name]
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{name} must be a non-empty string, got {type(raw).__name__}")
    return raw


def integer(raw: Any, name: str, lo: int, hi: int) -> int:
    """A JSON Schema integer (``3`` or ``3.0``; not ``true``, ``"3"`` or ``3.5``) in ``[lo, hi]``."""
    if (isinstance(raw, bool) or not isinstance(raw, int | float)
            or (isinstance(raw, float) and not raw.is_integer()) or not lo <= raw <= hi):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {raw!r}")
    return int(raw)


def _numbers(column: Any, name: str, *, nulls: bool = False) -> NDArray[np.float64]:
    """A list of JSON numbers as float64 (``nulls``: ``null`` = not measured, NaN)."""
    allowed = {int, float, type(None)} if nulls else {int, float}
    if not isinstance(column, list) or not set(map(type, column)) <= allowed:
        raise ValueError(f"column {name!r} must be a list of numbers")
    return np.asarray([np.nan if v is None else v for v in column] if nulls else column, dtype=np.float64)


def _strings(column: Any, name: str) -> list[str]:
    """The column itself when it is a list of strings (checked at C speed), else a clear error."""
    if not isinstance(column, list) or not set(map(type, column)) <= {str}:
        raise ValueError(f"column {name!r} must be a list of strings")
    return column


def summarise_probs(
    probs: NDArray[np.floating],
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Predicted class, max probability and entropy (nats) per row of ``probs`` [N, K]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs of shape {p.shape!r}: expected [N, K]")
    pred = p.argmax(axis=1).astype(np.int64)
    conf = p.max(axis=1)
    safe = np.clip(p, 1e-12, 1.0)
    entropy = -(p * np.log(safe)).sum(axis=1)
    return pred, conf, np.maximum(entropy, 0.0)


def concat(batches: list[PredictionBatch]) -> PredictionBatch:
    """One batch out of several of the same model version (in order), so that the window math runs once.

    STRIP entropies missing in some of the batches become NaN (not measured) in the result.
    """
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    if any((b.model, b.version, b.n_classes) != (first.model, first.version, first.n_classes) for b in batches):
        raise ValueError("batches of different model versions or class counts cannot be merged")
    strip = None
    if any(b.strip is not None for b in batches):
        strip = np.concatenate([np.full(len(b), np.nan) if b.strip is None else b.strip for b in batches])
    return PredictionBatch(
        model=first.model, version=first.version, server_id=first.server_id, batch_id=batches[-1].batch_id,
        n_classes=first.n_classes, ids=[i for b in batches for i in b.ids],
        ts=np.concatenate([b.ts for b in batches]), pred=np.concatenate([b.pred for b in batches]),
        conf=np.concatenate([b.conf for b in batches]), entropy=np.concatenate([b.entropy for b in batches]),
        sig=[s for b in batches for s in b.sig], strip=strip)
