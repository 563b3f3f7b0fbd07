"""Class-distribution and confidence findings of one window against its baseline.

Targeted misclassification (all-to-one backdoor in use): one class's share rises significantly
(one-sided two-proportion z-test, Bonferroni over classes), its predictions stay as confident as in
the baseline, and the other classes keep their baseline proportions among themselves (chi-square
homogeneity test does not reject) - triggered inputs are drawn from every source class alike.
Natural drift moves several classes and/or lowers confidence, so it fails those two conditions and is
reported as class drift (KL + chi-square significance) or confidence drop instead.

Limit: a pure label shift into one class at unchanged confidence looks exactly like an all-to-one
attack in class counts, and with few classes the proportionality test has little power (measured:
3 classes, Dirichlet prior shifts at baseline confidence, ~1 window in 3 is called targeted). That is
why an uncorroborated targeted finding is "high" and only a rare pattern / trigger match of the same
class makes it "critical". With two classes the proportionality test has no degrees of freedom at all (a
daily cycle of a two-class mix raised a targeted finding in 205-311 of 350 windows), so there an
uncorroborated finding is dropped and the shift reported as class drift (``Thresholds.min_targeted_classes``,
:mod:`.evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.telemetry.domain.alerts import AlertKind, Severity
from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.stats import (
    binom_sf,
    homogeneity_test,
    hypergeom_sf,
    normal_sf,
    two_proportion_z,
    welch_z,
)
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats


@dataclass(frozen=True)
class Finding:
    kind: AlertKind
    severity: Severity
    evidence: dict[str, Any]
    target_class: int | None = None
    key: str = ""
    corroborates: tuple[int, ...] = field(default=())


def class_view(stats: WindowStats, baseline: Baseline) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Window counts and smoothed baseline probabilities on a common class axis."""
    k = max(stats.n_classes, baseline.n_classes)
    counts = np.zeros(k)
    counts[: stats.n_classes] = stats.class_counts
    return counts, baseline.class_probs(k)


def kl_divergence(counts: NDArray[np.float64], probs: NDArray[np.float64]) -> float:
    """KL(window || baseline) in nats; window empirical, baseline smoothed."""
    q = counts / max(counts.sum(), 1.0)
    nz = q > 0
    return float((q[nz] * np.log(q[nz] / probs[nz])).sum())


def targeted(stats: WindowStats, baseline: Baseline, thr: Thresholds) -> Finding | None:
    counts, probs = class_view(stats, baseline)
    n, k = float(stats.count), counts.size
    z = np.array([two_proportion_z(c, n, p, baseline.n) for c, p in zip(counts, probs, strict=True)])
    excess = counts - n * probs
    lift = counts / n - probs
    pvals = np.array([normal_sf(v) for v in z])
    surging = np.flatnonzero((pvals < thr.alpha / k) & (excess >= thr.min_target_excess)
                             & (lift >= thr.min_share_lift))
    surging = np.array([c for c in surging.tolist()
                        if _exact_p(c, counts, probs, n, baseline) < thr.alpha / k], dtype=np.int64)
    if surging.size != 1:
        return None
    t = int(surging[0])
    others = np.arange(k) != t
    ref_n = None if baseline.n is None else baseline.n * (1.0 - probs[t])
    _, _, p_prop = homogeneity_test(counts[others], probs[others] / probs[others].sum(), ref_n)
    conf_t = stats.class_conf_sum[t] / counts[t] if t < stats.n_classes and counts[t] else math.nan
    base_conf_t = float(baseline.class_conf_mean[t]) if t < baseline.n_classes else baseline.conf_mean
    if p_prop < thr.proportional_alpha or not conf_t >= base_conf_t - thr.conf_tolerance:
        return None
    return Finding("targeted_misclassification", "high", {
        "target_share": counts[t] / n, "baseline_share": float(probs[t]),
        "excess_predictions": float(excess[t]),
        "z": float(z[t]), "p_value": float(pvals[t]), "classes": k,
        "others_proportional_p_value": p_prop, "target_mean_conf": float(conf_t),
        "baseline_target_mean_conf": base_conf_t, "window_predictions": int(n),
        "kl_divergence": kl_divergence(counts, probs),
    }, target_class=t, key=str(t))


def _exact_p(c: int, counts: NDArray[np.float64], probs: NDArray[np.float64], n: float,
             baseline: Baseline) -> float:
    """Exact tail for small counts, where the normal z-test is anti-conservative: binomial against
    an exact baseline, one-sided Fisher exact test (window vs baseline) against a sampled one."""
    if baseline.n is None:
        return binom_sf(int(counts[c]), int(n), float(probs[c]))
    base = round(float(baseline.class_counts[c])) if c < baseline.n_classes else 0
    return hypergeom_sf(int(counts[c]), int(n) + round(baseline.n), int(counts[c]) + base, int(n))


def drift(stats: WindowStats, baseline: Baseline, thr: Thresholds) -> list[Finding]:
    counts, probs = class_view(stats, baseline)
    n, k = float(stats.count), counts.size
    kl = kl_divergence(counts, probs)
    stat, dof, p = homogeneity_test(counts, probs, baseline.n)
    conf_mean, conf_std = stats.mean_std(stats.conf_sum, stats.conf_sumsq, stats.count)
    ent = entropy_shift(stats, baseline, thr)
    out: list[Finding] = []
    if kl >= thr.kl_drift and p < thr.alpha:
        shares = counts / n - probs
        moved = np.argsort(-np.abs(shares))[:5]
        out.append(Finding("class_distribution_drift", "medium" if kl >= thr.kl_alert else "low", {
            "kl_divergence": kl, "kl_debiased": kl - (k - 1) / (2 * n), "kl_drift_threshold": thr.kl_drift,
            "kl_alert_threshold": thr.kl_alert, "chi2": stat, "dof": dof, "p_value": p,
            "largest_share_changes": {str(int(c)): float(shares[c]) for c in moved}, **ent,
        }))
    drop = baseline.conf_mean - conf_mean
    z = welch_z(baseline.conf_mean, baseline.conf_std**2, baseline.n or 1e12, conf_mean, conf_std**2, n)
    if drop > thr.conf_drop and normal_sf(z) < thr.alpha:
        severe = drop >= 2 * thr.conf_drop or ent["entropy_shift_significant"]
        out.append(Finding("confidence_drop", "medium" if severe else "low", {
            "mean_conf": conf_mean, "baseline_mean_conf": baseline.conf_mean, "drop": drop,
            "drop_threshold": thr.conf_drop, "z": z, **ent,
        }))
    return out


def entropy_shift(stats: WindowStats, baseline: Baseline, thr: Thresholds | None = None) -> dict[str, Any]:
    thr = thr or Thresholds()
    mean, std = stats.mean_std(stats.ent_sum, stats.ent_sumsq, stats.count)
    z = welch_z(mean, std**2, stats.count, baseline.ent_mean, baseline.ent_std**2, baseline.n)
    shift_sd = (mean - baseline.ent_mean) / max(baseline.ent_std, 1e-9)
    significant = 2 * normal_sf(abs(z)) < thr.alpha and abs(shift_sd) >= thr.entropy_shift_sd
    return {"entropy_mean": mean, "baseline_entropy_mean": baseline.ent_mean, "entropy_shift_sd": shift_sd,
            "entropy_z": z, "entropy_shift_significant": bool(significant)}
