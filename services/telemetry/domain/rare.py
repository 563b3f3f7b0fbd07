"""Rare input patterns and trigger-library matches of one window.

A signature component is a *rare input pattern* when it (1) recurs in the window
(``pattern_min_count``), (2) maps consistently to one class - its majority class share is at least
``pattern_consistency`` and significantly above that class's baseline share (exact binomial test),
and (3) is rare in normal traffic - below ``pattern_max_reference_freq`` of the baseline and
significantly more frequent now than there (binomial test against the count-min upper bound). With
no baseline sketch, (3) falls back to "below that share of the window". Tests are Bonferroni-
corrected over the components judged. Natural recurring blocks (backgrounds, borders) fail (2);
natural class-specific details fail (3) because the baseline already holds them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.findings import Finding, class_view
from services.telemetry.domain.patterns import component_name
from services.telemetry.domain.stats import binom_sf
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats

MAX_PATTERNS_PER_ALERT = 5


def rare_patterns(stats: WindowStats, baseline: Baseline, thr: Thresholds) -> list[Finding]:
    summ = stats.patterns
    idx = np.flatnonzero(summ.seen >= thr.pattern_min_count)
    if idx.size == 0 or stats.count == 0:
        return []
    _, probs = class_view(stats, baseline)
    consistency = summ.top_count[idx] / summ.seen[idx]
    ok = consistency >= thr.pattern_consistency
    idx, consistency = idx[ok], consistency[ok]
    if idx.size == 0:
        return []
    ref = baseline.reference_frequency(summ.keys[idx])
    ref_n = max(baseline.sketch_n, 1)
    limit = thr.alpha / max(int((summ.seen >= thr.pattern_min_count).sum()), 1)
    by_class: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j, i in enumerate(idx.tolist()):
        seen, cls, top = int(summ.seen[i]), int(summ.top_class[i]), int(summ.top_count[i])
        freq = seen / stats.count
        p_class = binom_sf(top, seen, float(probs[cls]) if cls < probs.size else 1.0 / probs.size)
        if ref is None:
            rare, p_novel, ref_freq = freq < thr.pattern_max_reference_freq, None, None
        else:
            ref_freq = float(ref[j])
            p_novel = binom_sf(seen, stats.count, max(ref_freq, 1.0 / ref_n))
            rare = ref_freq < thr.pattern_max_reference_freq and p_novel < limit
        if rare and p_class < limit:
            by_class[cls].append({
                "pattern": component_name(int(summ.keys[i])), "count": seen, "class": cls,
                "consistency": float(consistency[j]), "window_frequency": freq,
                "baseline_frequency": ref_freq, "class_p_value": p_class, "novelty_p_value": p_novel,
                "example_prediction_ids": summ.examples[i],
            })
    out = []
    for cls, pats in sorted(by_class.items()):
        pats.sort(key=lambda d: -d["count"])
        out.append(Finding("rare_input_pattern", "high", {
            "patterns": pats[:MAX_PATTERNS_PER_ALERT], "patterns_found": len(pats),
            "window_predictions": stats.count,
        }, target_class=cls, key=str(cls)))
    return out


def trigger_matches(stats: WindowStats, thr: Thresholds) -> list[Finding]:
    out = []
    for pid, tally in sorted(stats.triggers.items()):
        total = sum(tally.values())
        if total < thr.trigger_min_matches:
            continue
        cls, top = max(((int(c), n) for c, n in tally.items()), key=lambda cn: cn[1])
        consistent = top / total >= thr.pattern_consistency
        out.append(Finding("trigger_pattern_match", "critical" if consistent else "high", {
            "pattern_id": pid, "matches": total, "majority_class": cls, "consistency": top / total,
            "class_counts": dict(tally), "window_predictions": stats.count,
        }, target_class=cls if consistent else None, key=pid))
    return out
