"""Mergeable per-window accumulator: what a faust table stores per (model, version, window)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.domain.patterns import PatternSummary
from services.telemetry.domain.signature import CHARS_PER_BLOCK, TRIGGER_MARK, decode

MAX_TRIGGER_IDS = 1000
# STRIP entropies (nats) per predicted class on a fixed grid, so windows merge exactly and a
# baseline can name its low quantile: 1/16-nat bins over [0, 8), the last bin open-ended
STRIP_BINS, STRIP_BINS_PER_NAT = 128, 16
MAX_STRIP_CLASSES = 100  # above this the per-class histogram would outweigh the rest of the state


class WindowStats:
    """Sufficient statistics of a window; ``add`` is vectorised per batch, ``merge`` is exact.

    ``class_counts``/``class_conf_sum`` have shape [n_classes]; the window grows them if a batch
    reports more classes. Prediction-id range = ids of the earliest and latest event time.
    """

    def __init__(self, n_classes: int = 0, pattern_capacity: int = 256) -> None:
        self.count = 0
        self.class_counts: NDArray[np.int64] = np.zeros(n_classes, dtype=np.int64)
        self.class_conf_sum: NDArray[np.float64] = np.zeros(n_classes, dtype=np.float64)
        self.conf_sum = self.conf_sumsq = self.ent_sum = self.ent_sumsq = 0.0
        self.strip_count = 0
        self.strip_sum = self.strip_sumsq = 0.0
        self.strip_hist: NDArray[np.int64] | None = None  # [n_classes, STRIP_BINS] once STRIP values arrive
        self.ts_min, self.ts_max = math.inf, -math.inf
        self.first_id: str | None = None
        self.last_id: str | None = None
        self.patterns = PatternSummary(pattern_capacity)
        self.triggers: dict[str, dict[str, int]] = {}  # pattern id -> {predicted class: count}

    @property
    def n_classes(self) -> int:
        return int(self.class_counts.size)

    def _grow(self, n_classes: int) -> None:
        if n_classes > self.n_classes:
            extra = n_classes - self.n_classes
            self.class_counts = np.concatenate([self.class_counts, np.zeros(extra, dtype=np.int64)])
            self.class_conf_sum = np.concatenate([self.class_conf_sum, np.zeros(extra)])
            if self.strip_hist is not None:
                self.strip_hist = np.vstack([self.strip_hist, np.zeros((extra, STRIP_BINS), dtype=np.int64)])

    def add(self, batch: PredictionBatch) -> None:
        """Accumulate one batch (no per-prediction Python loop except for trigger-marked rows)."""
        n = len(batch)
        if n == 0:
            return
        self._grow(batch.n_classes)
        k = self.n_classes
        self.count += n
        self.class_counts += np.bincount(batch.pred, minlength=k)[:k]
        self.class_conf_sum += np.bincount(batch.pred, weights=batch.conf, minlength=k)[:k]
        self.conf_sum += float(batch.conf.sum())
        self.conf_sumsq += float(np.dot(batch.conf, batch.conf))
        self.ent_sum += float(batch.entropy.sum())
        self.ent_sumsq += float(np.dot(batch.entropy, batch.entropy))
        if batch.strip is not None:
            measured = np.isfinite(batch.strip)
            s = batch.strip[measured]
            self.strip_count += int(s.size)
            self.strip_sum += float(s.sum())
            self.strip_sumsq += float(np.dot(s, s))
            if s.size and k <= MAX_STRIP_CLASSES:
                self._add_strip(batch.pred[measured], s, k)
        lo, hi = int(batch.ts.argmin()), int(batch.ts.argmax())
        if batch.ts[lo] < self.ts_min:
            self.ts_min, self.first_id = float(batch.ts[lo]), batch.ids[lo]
        if batch.ts[hi] >= self.ts_max:
            self.ts_max, self.last_id = float(batch.ts[hi]), batch.ids[hi]
        head = batch.sig[0].split(TRIGGER_MARK, 1)[0] if batch.sig else ""
        n_blocks = min(255, len(head) // CHARS_PER_BLOCK)
        if n_blocks:
            hashes, marks = decode(batch.sig, n_blocks)
            self.patterns.update(hashes, batch.pred, batch.ids)
            for row, pattern_id in marks.items():
                self._count_trigger(pattern_id, int(batch.pred[row]), 1)

    def _add_strip(self, pred: NDArray[np.int64], strip: NDArray[np.float64], k: int) -> None:
        bins = np.clip((strip * STRIP_BINS_PER_NAT).astype(np.int64), 0, STRIP_BINS - 1)
        counts = np.bincount(pred * STRIP_BINS + bins, minlength=k * STRIP_BINS)[: k * STRIP_BINS]
        hist = counts.reshape(k, STRIP_BINS)
        self.strip_hist = hist if self.strip_hist is None else self.strip_hist + hist

    def _count_trigger(self, pattern_id: str, cls: int, count: int) -> None:
        if pattern_id not in self.triggers and len(self.triggers) >= MAX_TRIGGER_IDS:
            return
        tally = self.triggers.setdefault(pattern_id, {})
        tally[str(cls)] = tally.get(str(cls), 0) + count

    def merge(self, other: WindowStats) -> WindowStats:
        """Exact union of two windows' statistics (pattern summary merged per Misra-Gries)."""
        out = WindowStats(max(self.n_classes, other.n_classes), self.patterns.capacity)
        for part in (self, other):
            out.class_counts[: part.n_classes] += part.class_counts
            out.class_conf_sum[: part.n_classes] += part.class_conf_sum
            out.count += part.count
            out.conf_sum += part.conf_sum
            out.conf_sumsq += part.conf_sumsq
            out.ent_sum += part.ent_sum
            out.ent_sumsq += part.ent_sumsq
            out.strip_count += part.strip_count
            out.strip_sum += part.strip_sum
            out.strip_sumsq += part.strip_sumsq
            if part.ts_min < out.ts_min:
                out.ts_min, out.first_id = part.ts_min, part.first_id
            if part.ts_max >= out.ts_max:
                out.ts_max, out.last_id = part.ts_max, part.last_id
            for pid, tally in part.triggers.items():
                for cls, cnt in tally.items():
                    out._count_trigger(pid, int(cls), cnt)
            if part.strip_hist is not None:
                if out.strip_hist is None:
                    out.strip_hist = np.zeros((out.n_classes, STRIP_BINS), dtype=np.int64)
                out.strip_hist[: part.strip_hist.shape[0]] += part.strip_hist
        out.patterns = self.patterns.merge(other.patterns)
        return out

    def mean_std(self, total: float, sumsq: float, n: int) -> tuple[float, float]:
        """Mean and (population) standard deviation from running sums."""
        if n == 0:
            return math.nan, math.nan
        mean = total / n
        return mean, math.sqrt(max(sumsq / n - mean * mean, 0.0))

    def summary(self) -> dict[str, Any]:
        """Headline numbers (the ``telemetry.window-stats.v1`` fields this object can fill)."""
        conf_mean, _ = self.mean_std(self.conf_sum, self.conf_sumsq, self.count)
        ent_mean, ent_std = self.mean_std(self.ent_sum, self.ent_sumsq, self.count)
        return {"count": self.count, "class_counts": self.class_counts.tolist(), "mean_conf": conf_mean,
                "entropy_mean": ent_mean, "entropy_std": ent_std,
                "first_prediction_id": self.first_id, "last_prediction_id": self.last_id}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state for a faust table value (infinities of an empty window become None)."""
        return {
            "count": self.count, "class_counts": self.class_counts.tolist(),
            "class_conf_sum": self.class_conf_sum.tolist(), "conf_sum": self.conf_sum,
            "conf_sumsq": self.conf_sumsq, "ent_sum": self.ent_sum, "ent_sumsq": self.ent_sumsq,
            "strip_count": self.strip_count, "strip_sum": self.strip_sum, "strip_sumsq": self.strip_sumsq,
            "ts_min": self.ts_min if self.count else None, "ts_max": self.ts_max if self.count else None,
            "first_id": self.first_id, "last_id": self.last_id,
            "patterns": self.patterns.to_dict(), "triggers": self.triggers,
            "strip_hist": None if self.strip_hist is None else self.strip_hist.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowStats:
        out = cls(len(data["class_counts"]), int(data["patterns"]["capacity"]))
        out.count = int(data["count"])
        out.class_counts = np.asarray(data["class_counts"], dtype=np.int64)
        out.class_conf_sum = np.asarray(data["class_conf_sum"], dtype=np.float64)
        for name in ("conf_sum", "conf_sumsq", "ent_sum", "ent_sumsq", "strip_sum", "strip_sumsq"):
            setattr(out, name, float(data[name]))
        out.strip_count = int(data["strip_count"])
        out.ts_min = math.inf if data["ts_min"] is None else float(data["ts_min"])
        out.ts_max = -math.inf if data["ts_max"] is None else float(data["ts_max"])
        out.first_id, out.last_id = data["first_id"], data["last_id"]
        out.patterns = PatternSummary.from_dict(data["patterns"])
        out.triggers = {str(k): {str(c): int(n) for c, n in v.items()} for k, v in data["triggers"].items()}
        if data.get("strip_hist") is not None:
            out.strip_hist = np.asarray(data["strip_hist"], dtype=np.int64).reshape(-1, STRIP_BINS)
        return out


def accumulate(
    state: dict[str, Any] | None, batch: PredictionBatch, pattern_capacity: int = 256
) -> dict[str, Any]:
    """One faust table update: previous JSON state (or None) + one batch -> new JSON state."""
    stats = WindowStats(batch.n_classes, pattern_capacity) if state is None else WindowStats.from_dict(state)
    stats.add(batch)
    return stats.to_dict()
