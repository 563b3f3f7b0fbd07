"""Per-class agreement of model-level detectors (Stouffer's method). Pure.

Each model-level detector scores every class with a robust z-like index (Neural Cleanse: small and
persistent reversed trigger; MM-BD: large maximum margin). Taken alone, a detector's maximum over K
classes needs a high bar: it is the largest of K noisy values. Two detectors that point at the *same*
class are far stronger evidence than either one's maximum, and on a clean model their outliers fall
on unrelated classes (a class that is naturally easy to reach by a small mask does not, by that,
reach a large logit margin). The agreement index of class c is the sum of the signals' indices for c
divided by the standard deviation of that sum under the null: signals of different detectors are
taken as independent, signals of one detector (Neural Cleanse's own index and its index against a
clean earlier version, both read off the same reversed triggers) as fully correlated. So it stays on
the scale of its inputs (standard normal for standard-normal nulls) and shares their kind of threshold.

Detectors publish their per-class indices as ``evidence["class_scores"]`` and, when they have a
clean earlier version to compare with, ``evidence["baseline_class_scores"]``. Results without them,
or whose class count differs, are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.model import FloatArray

KEY = "agreement.v1"
DEFAULT_THRESHOLD = 3.0
SIGNALS = ("class_scores", "baseline_class_scores")


def signals(results: Sequence[DetectionResult]) -> list[tuple[str, str, list[float]]]:
    """(detector key, signal name, per-class index) for every per-class signal the results publish."""
    return [(r.key, name, [float(v) for v in r.evidence[name]]) for r in results for name in SIGNALS
            if r.evidence.get(name) is not None]


def _stouffer(rows: list[tuple[str, str, list[float]]]) -> FloatArray:
    per_source = Counter(k for k, _, _ in rows)
    z = np.nan_to_num(np.asarray([s for _, _, s in rows], dtype=float), nan=0.0)
    joined: FloatArray = z.sum(axis=0) / np.sqrt(sum(n * n for n in per_source.values()))
    return joined


def agreement(results: Sequence[DetectionResult], threshold: float = DEFAULT_THRESHOLD) -> DetectionResult | None:
    """The per-class agreement of ``results`` as one more result, or ``None`` when fewer than two
    per-class signals over the same classes are published. With a clean earlier version, each class
    keeps the larger of its index with and without the baseline signal: a target whose class was
    already easy in the earlier version must not be diluted by it."""
    rows = signals(results)
    if len(rows) < 2 or len({len(s) for _, _, s in rows}) != 1:
        return None
    joined = _stouffer(rows)
    plain = [r for r in rows if r[1] != "baseline_class_scores"]
    if len(plain) != len(rows) and len(plain) >= 2:
        joined = np.maximum(joined, _stouffer(plain))
    ranking = [int(c) for c in np.argsort(-joined, kind="stable")]
    score = float(joined.max())
    flagged = score > threshold
    targets = [c for c in ranking if joined[c] > threshold] if flagged else []
    return DetectionResult(
        KEY, round(score, 6), threshold, "suspicious" if flagged else "clean", targets,
        {"class_scores": [round(float(v), 3) for v in joined], "ranking": ranking,
         "signals": [f"{k}/{name}" for k, name, _ in rows]}, [], 0.0)
