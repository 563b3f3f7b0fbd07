"""One prediction per message: the form a plain client (no bdguard client library) is likely to send.

    {"model": "digits", "version": "3", "prediction_id": "req-17", "ts": 1763900000.1,
     "probabilities": [0.01, 0.97, ...]}                         # or top-1 only:
    {..., "predicted_class": 1, "confidence": 0.97, "n_classes": 10}
    optional: "server_id", "sig" (input signature, see signature.py), "strip_entropy", "entropy"

It becomes a one-row :class:`PredictionBatch`; the agent merges many of them per model version, so
the window math still runs per group. Without probabilities the prediction entropy is estimated
from the confidence with the rest of the mass spread evenly over the other classes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from services.telemetry.domain.batch import MAX_CLASSES, PredictionBatch, integer, text

REQUIRED = ("model", "version", "prediction_id", "ts")


def is_single(value: Mapping[str, Any]) -> bool:
    return "prediction_id" in value and "ids" not in value


def single_prediction(value: Mapping[str, Any]) -> PredictionBatch:
    """Validate and convert; raises ``KeyError`` for a missing field, ``ValueError`` naming a bad one."""
    for name in REQUIRED:
        if name not in value:
            raise KeyError(name)
    unknown = set(value) - {*REQUIRED, "probabilities", "predicted_class", "confidence", "n_classes",
                            "server_id", "sig", "strip_entropy", "entropy"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    ts = _finite(value["ts"], "ts")
    if value.get("probabilities") is not None:
        pred, conf, entropy, n_classes = _from_probabilities(value["probabilities"])
    else:
        pred, conf, entropy, n_classes = _from_top1(value)
    if value.get("entropy") is not None:
        entropy = _finite(value["entropy"], "entropy")
    sig = value.get("sig") or ""
    if not isinstance(sig, str):
        raise ValueError("sig must be a string")
    strip = value.get("strip_entropy")
    prediction_id = text(value, "prediction_id")
    return PredictionBatch(
        model=text(value, "model"), version=text(value, "version"), server_id=str(value.get("server_id") or "plain"),
        batch_id=hashlib.sha256(prediction_id.encode()).hexdigest()[:16], n_classes=n_classes, ids=[prediction_id],
        ts=np.array([ts]), pred=np.array([pred], dtype=np.int64), conf=np.array([conf]),
        entropy=np.array([max(entropy, 0.0)]), sig=[sig],
        strip=None if strip is None else np.array([_finite(strip, "strip_entropy")]))


def _from_probabilities(raw: Any) -> tuple[int, float, float, int]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_CLASSES:
        raise ValueError(f"probabilities must be a list of 2..{MAX_CLASSES} numbers")
    try:
        p = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("probabilities must be numbers") from exc
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    pred = int(p.argmax())
    safe = np.clip(p, 1e-12, 1.0)
    return pred, float(p[pred]), float(-(p * np.log(safe)).sum()), int(p.size)


def _from_top1(value: Mapping[str, Any]) -> tuple[int, float, float, int]:
    for name in ("predicted_class", "confidence", "n_classes"):
        if value.get(name) is None:
            raise KeyError(name if name != "predicted_class" else "probabilities or predicted_class")
    n_classes = integer(value["n_classes"], "n_classes", 2, MAX_CLASSES)
    pred = integer(value["predicted_class"], "predicted_class", 0, n_classes - 1)
    conf = _finite(value["confidence"], "confidence")
    if not 0.0 <= conf <= 1.0:
        raise ValueError("confidence must lie in [0, 1]")
    rest = (1.0 - conf) / (n_classes - 1)
    entropy = -conf * math.log(max(conf, 1e-12)) - (1.0 - conf) * math.log(max(rest, 1e-12))
    return pred, conf, entropy, n_classes


def _finite(raw: Any, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"{name} must be a finite number")
    return float(raw)
