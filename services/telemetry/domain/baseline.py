"""Per-model-version reference behaviour: learnt from the first N predictions or supplied."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.domain.patterns import component_keys
from services.telemetry.domain.signature import CHARS_PER_BLOCK, TRIGGER_MARK, decode
from services.telemetry.domain.sketch import CountMinSketch
from services.telemetry.domain.window import WindowStats

SMOOTHING = 0.5  # Jeffreys prior: no class has probability zero, so KL and tests stay finite


@dataclass(frozen=True)
class Baseline:
    """Reference distribution of one model version.

    ``n`` is the number of predictions behind it (``None``: treat as exact, e.g. supplied from a
    large clean-data run); ``sketch`` counts signature components of the baseline traffic (``None``
    when the baseline was supplied without inputs).
    """

    class_counts: NDArray[np.float64]
    n: float | None
    conf_mean: float
    conf_std: float
    ent_mean: float
    ent_std: float
    class_conf_mean: NDArray[np.float64]
    sketch: CountMinSketch | None = None
    sketch_n: int = 0
    strip_hist: NDArray[np.int64] | None = None  # STRIP entropies per class (window.py grid), if measured

    @property
    def n_classes(self) -> int:
        return int(self.class_counts.size)

    def class_probs(self, n_classes: int | None = None) -> NDArray[np.float64]:
        """Smoothed class distribution, padded with the prior to ``n_classes`` classes."""
        k = max(self.n_classes, n_classes or 0)
        counts = np.zeros(k)
        counts[: self.n_classes] = self.class_counts
        counts += SMOOTHING
        probs: NDArray[np.float64] = counts / counts.sum()
        return probs

    def reference_frequency(self, keys: NDArray[np.uint64]) -> NDArray[np.float64] | None:
        """Upper-bound share of baseline predictions carrying each component, or None."""
        if self.sketch is None or self.sketch_n == 0:
            return None
        return self.sketch.query(keys) / float(self.sketch_n)

    @classmethod
    def from_window(cls, stats: WindowStats, sketch: CountMinSketch | None = None,
                    sketch_n: int = 0) -> Baseline:
        if stats.count == 0:
            raise ValueError("cannot build a baseline from an empty window")
        conf_mean, conf_std = stats.mean_std(stats.conf_sum, stats.conf_sumsq, stats.count)
        ent_mean, ent_std = stats.mean_std(stats.ent_sum, stats.ent_sumsq, stats.count)
        counts = stats.class_counts.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(counts > 0, stats.class_conf_sum / np.maximum(counts, 1), conf_mean)
        return cls(counts, float(stats.count), conf_mean, conf_std, ent_mean, ent_std, per_class,
                   sketch, sketch_n, None if stats.strip_hist is None else stats.strip_hist.copy())

    @classmethod
    def supplied(cls, class_probs: list[float] | NDArray[np.float64], conf_mean: float, conf_std: float,
                 ent_mean: float, ent_std: float, n: float | None = None) -> Baseline:
        """A baseline from numbers computed elsewhere (e.g. the scanner's clean-data run)."""
        probs = np.asarray(class_probs, dtype=np.float64)
        if probs.ndim != 1 or probs.size < 2 or (probs < 0).any() or not math.isclose(probs.sum(), 1.0,
                                                                                        rel_tol=1e-6):
            raise ValueError(f"class_probs={class_probs!r}: need >= 2 non-negative shares summing to 1")
        scale = n if n is not None else 1e6
        return cls(probs * scale, n, conf_mean, conf_std, ent_mean, ent_std, np.full(probs.size, conf_mean))

    def to_dict(self) -> dict[str, Any]:
        return {"class_counts": self.class_counts.tolist(), "n": self.n, "conf_mean": self.conf_mean,
                "conf_std": self.conf_std, "ent_mean": self.ent_mean, "ent_std": self.ent_std,
                "class_conf_mean": self.class_conf_mean.tolist(), "sketch_n": self.sketch_n,
                "sketch": None if self.sketch is None else self.sketch.to_dict(),
                "strip_hist": None if self.strip_hist is None else self.strip_hist.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        return cls(np.asarray(data["class_counts"], dtype=np.float64), data["n"], float(data["conf_mean"]),
                   float(data["conf_std"]), float(data["ent_mean"]), float(data["ent_std"]),
                   np.asarray(data["class_conf_mean"], dtype=np.float64),
                   None if data["sketch"] is None else CountMinSketch.from_dict(data["sketch"]),
                   int(data["sketch_n"]),
                   None if data.get("strip_hist") is None else np.asarray(data["strip_hist"], dtype=np.int64))


class BaselineBuilder:
    """Learns a :class:`Baseline` from the first ``target`` predictions of a model version."""

    def __init__(self, target: int = 10_000, sketch_width: int = 4096, sketch_depth: int = 4) -> None:
        if target < 100:
            raise ValueError(f"target={target!r}: need at least 100 predictions")
        self.target = target
        self.stats = WindowStats()
        self.sketch = CountMinSketch(sketch_width, sketch_depth)

    @property
    def ready(self) -> bool:
        return self.stats.count >= self.target

    def add(self, batch: PredictionBatch) -> int:
        """Consume up to the remaining predictions of ``batch``; returns how many were used."""
        take = min(len(batch), self.target - self.stats.count)
        if take <= 0:
            return 0
        if take < len(batch):
            batch = _head(batch, take)
        self.stats.add(batch)
        head = batch.sig[0].split(TRIGGER_MARK, 1)[0] if batch.sig else ""
        if len(head) >= CHARS_PER_BLOCK:
            hashes, _ = decode(batch.sig, min(255, len(head) // CHARS_PER_BLOCK))
            keys, _ = component_keys(hashes)
            self.sketch.add(keys)
        return take

    def build(self) -> Baseline:
        return Baseline.from_window(self.stats, self.sketch, self.stats.count)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "stats": self.stats.to_dict(), "sketch": self.sketch.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineBuilder:
        sketch = CountMinSketch.from_dict(data["sketch"])
        out = cls(int(data["target"]), sketch.width, sketch.depth)
        out.stats, out.sketch = WindowStats.from_dict(data["stats"]), sketch
        return out


def _head(batch: PredictionBatch, n: int) -> PredictionBatch:
    return dataclasses.replace(
        batch, ids=batch.ids[:n], ts=batch.ts[:n], pred=batch.pred[:n], conf=batch.conf[:n],
        entropy=batch.entropy[:n], sig=batch.sig[:n], strip=None if batch.strip is None else batch.strip[:n])
