"""A columnar batch of predictions (the ``telemetry.predictions.v1`` value) as numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_COLUMNS = ("ids", "ts", "pred", "conf", "entropy", "sig")


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
        """Validate and convert a decoded wire value; raises ``ValueError`` naming the bad field."""
        n = len(value["ids"])
        for name in _COLUMNS:
            if len(value[name]) != n:
                raise ValueError(f"column {name!r} has {len(value[name])} values, ids has {n}")
        strip_raw = value.get("strip")
        if strip_raw is not None and len(strip_raw) != n:
            raise ValueError(f"column 'strip' has {len(strip_raw)} values, ids has {n}")
        n_classes = int(value["n_classes"])
        pred = np.asarray(value["pred"], dtype=np.int64)
        if n and (pred.min() < 0 or pred.max() >= n_classes):
            raise ValueError(
                f"pred values must lie in [0, n_classes={n_classes}); got {pred.min()}..{pred.max()}")
        strip = None if strip_raw is None else np.asarray(
            [np.nan if v is None else v for v in strip_raw], dtype=np.float64)
        return cls(
            model=str(value["model"]), version=str(value["version"]), server_id=str(value["server_id"]),
            batch_id=str(value["batch_id"]), n_classes=n_classes, ids=_strings(value["ids"], "ids"),
            ts=np.asarray(value["ts"], dtype=np.float64), pred=pred,
            conf=np.asarray(value["conf"], dtype=np.float64),
            entropy=np.asarray(value["entropy"], dtype=np.float64), sig=_strings(value["sig"], "sig"), strip=strip,
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
