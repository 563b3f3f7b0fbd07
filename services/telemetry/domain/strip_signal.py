"""STRIP at runtime: a class whose inputs suddenly resist superimposition is receiving trojaned inputs.

Inference servers that run the scanner's STRIP guard send each prediction's STRIP entropy (entropy of
the model's predictions over the input blended with clean samples). A trigger dominates the blend,
so trojaned inputs keep a low entropy whatever the trigger looks like — patch, blend or warp, which
is what the signature-based rare-pattern signal cannot see. Clean classes differ in how robust they
are, so each class is compared with its own baseline: "low" is below the baseline's
``strip_low_quantile`` of all STRIP entropies, and a class is flagged when its share of low entropies
is far above its baseline share (one-sided exact binomial test, Bonferroni over classes, with a floor
on the count and on the lift).

Limits: needs the guard on the server (no entropies, no signal), a baseline with enough STRIP-measured
predictions, and a trigger that survives blending (STRIP's own limit: triggers that are destroyed by
superimposition, or source-specific backdoors that also fire on blended clean content, evade it).
"""

from __future__ import annotations

import numpy as np

from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.findings import Finding
from services.telemetry.domain.stats import binom_sf
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import STRIP_BINS_PER_NAT, WindowStats


def strip_trojaned(stats: WindowStats, baseline: Baseline, thr: Thresholds) -> Finding | None:
    """The class most clearly receiving low-STRIP-entropy inputs, or None."""
    if stats.strip_hist is None or baseline.strip_hist is None:
        return None
    base = baseline.strip_hist.astype(np.float64)
    total = base.sum()
    if total < thr.strip_min_baseline:
        return None
    low_bins = int(np.searchsorted(base.sum(axis=0).cumsum() / total, thr.strip_low_quantile)) + 1
    k = max(stats.strip_hist.shape[0], base.shape[0])
    window = np.zeros((k, stats.strip_hist.shape[1]))
    window[: stats.strip_hist.shape[0]] = stats.strip_hist
    reference = np.zeros((k, base.shape[1]))
    reference[: base.shape[0]] = base
    base_low, base_n = reference[:, :low_bins].sum(axis=1), reference.sum(axis=1)
    overall = base_low.sum() / total
    rate = (base_low + overall) / (base_n + 1.0)  # shrunk toward the overall rate: small classes stay sane
    low, measured = window[:, :low_bins].sum(axis=1), window.sum(axis=1)
    best: tuple[float, int] | None = None
    for candidate in np.flatnonzero((low >= thr.strip_min_low) & (low >= thr.strip_min_lift * rate * measured)):
        tail = binom_sf(int(low[candidate]), int(measured[candidate]), float(rate[candidate]))
        if tail < thr.alpha / k and (best is None or tail < best[0]):
            best = (tail, int(candidate))
    if best is None:
        return None
    p, c = best
    return Finding("strip_trojaned_inputs", "high", {
        "class": c, "low_strip_predictions": int(low[c]), "strip_measured_predictions": int(measured[c]),
        "low_share": round(float(low[c] / measured[c]), 4), "baseline_low_share": round(float(rate[c]), 4),
        "low_entropy_below_nats": low_bins / STRIP_BINS_PER_NAT, "p_value": p,
        "meaning": "inputs predicted as this class keep their prediction when blended with clean inputs "
                   "far more often than in the baseline: a trigger dominates them"}, target_class=c, key=str(c))
