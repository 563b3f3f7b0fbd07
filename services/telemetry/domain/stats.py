"""Small, dependency-free statistical tests (stdlib + numpy; no scipy in the domain).

Tail probabilities are computed in log space where it matters so that tiny p-values stay ordered.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

_EPS = 1e-300


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal, P(Z >= z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (Numerical Recipes gser/gcf)."""
    if x <= 0.0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - gln))
    b = x + 1.0 - a
    c = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - gln) * h


def chi2_sf(stat: float, dof: int) -> float:
    """P(X >= stat) for X ~ chi-square(dof); 1.0 when dof < 1."""
    if dof < 1 or not math.isfinite(stat):
        return 1.0 if dof < 1 else 0.0
    return _gamma_q(dof / 2.0, stat / 2.0)


def _lgam(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array([math.lgamma(x) for x in v.tolist()], dtype=np.float64)


def _tail(log_pmf: Callable[[NDArray[np.float64]], NDArray[np.float64]], k: int, lo: int, hi: int,
          mean: float, sd: float) -> float:
    """P(X >= k) for a discrete law on [lo, hi] from its log pmf, summing only the terms that matter
    (at most ~12 sd + 30 of them: further terms are below 1e-30 of the largest)."""
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    span = int(12 * sd) + 30
    if k > mean:  # upper tail directly
        ks = np.arange(k, min(hi, k + span) + 1, dtype=np.float64)
        return _logsumexp_clip(log_pmf(ks))
    ks = np.arange(max(lo, k - 1 - span), k, dtype=np.float64)  # 1 - lower tail
    return max(0.0, 1.0 - _logsumexp_clip(log_pmf(ks)))


def _logsumexp_clip(log_terms: NDArray[np.float64]) -> float:
    top = float(log_terms.max())
    return min(1.0, math.exp(top) * float(np.exp(log_terms - top).sum()))


def binom_sf(k: int, n: int, p: float) -> float:
    """Exact upper tail P(X >= k) for X ~ Binomial(n, p)."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    const = math.lgamma(n + 1)

    def log_pmf(ks: NDArray[np.float64]) -> NDArray[np.float64]:
        return const - _lgam(ks + 1) - _lgam(n - ks + 1) + ks * math.log(p) + (n - ks) * math.log1p(-p)

    return _tail(log_pmf, k, 0, n, n * p, math.sqrt(n * p * (1 - p)))


def hypergeom_sf(k: int, total: int, successes: int, draws: int) -> float:
    """Exact P(X >= k), X ~ Hypergeometric(total, successes, draws): the one-sided Fisher exact test
    of a 2x2 table (window vs baseline, this class vs the rest)."""
    const = (math.lgamma(successes + 1) + math.lgamma(total - successes + 1) - math.lgamma(total + 1)
             + math.lgamma(draws + 1) + math.lgamma(total - draws + 1))

    def log_pmf(ks: NDArray[np.float64]) -> NDArray[np.float64]:
        return const - _lgam(ks + 1) - _lgam(successes - ks + 1) - _lgam(draws - ks + 1) \
            - _lgam(total - successes - draws + ks + 1)

    share = successes / max(total, 1)
    var = draws * share * (1 - share) * (total - draws) / max(total - 1, 1)
    return _tail(log_pmf, k, max(0, draws - (total - successes)), min(successes, draws),
                 draws * share, math.sqrt(max(var, 0.0)))


def homogeneity_test(
    window: NDArray[np.float64], reference: NDArray[np.float64], reference_n: float | None,
    min_expected: float = 5.0,
) -> tuple[float, int, float]:
    """Chi-square test that window counts follow the reference class distribution.

    Args:
        window: observed counts, shape [K].
        reference: reference probabilities, shape [K] (smoothed, sums to 1).
        reference_n: predictions behind ``reference``; ``None`` treats it as exact (goodness of fit),
            otherwise a 2xK contingency test accounts for the reference's own sampling noise.
        min_expected: cells whose expected window count is below this are pooled into one cell, the
            usual validity rule for the chi-square approximation.

    Returns:
        (statistic, degrees of freedom, p-value).
    """
    n = float(window.sum())
    if n <= 0:
        return 0.0, 0, 1.0
    expected = n * reference
    small = expected < min_expected
    if small.any():
        obs = np.append(window[~small], window[small].sum())
        ref = np.append(reference[~small], reference[small].sum())
        if ref[-1] * n < min_expected:  # pooled cell still too small: fold it into the largest
            big = int(np.argmax(ref[:-1])) if len(ref) > 1 else 0
            obs[big] += obs[-1]
            ref[big] += ref[-1]
            obs, ref = obs[:-1], ref[:-1]
    else:
        obs, ref = window, reference
    dof = len(obs) - 1
    if dof < 1:
        return 0.0, 0, 1.0
    if reference_n is None:
        exp = n * ref
        stat = float(((obs - exp) ** 2 / np.maximum(exp, _EPS)).sum())
    else:
        base = ref * reference_n
        total = obs + base
        grand = n + reference_n
        e_w = total * n / grand
        e_b = total * reference_n / grand
        stat = float(((obs - e_w) ** 2 / np.maximum(e_w, _EPS)).sum()
                     + ((base - e_b) ** 2 / np.maximum(e_b, _EPS)).sum())
    return stat, dof, chi2_sf(stat, dof)


def two_proportion_z(count: float, n: float, p_ref: float, n_ref: float | None) -> float:
    """z statistic that the window share ``count/n`` exceeds the reference share ``p_ref``."""
    if n <= 0:
        return 0.0
    share = count / n
    if n_ref is None:
        pooled, inv = p_ref, 1.0 / n
    else:
        pooled = (count + p_ref * n_ref) / (n + n_ref)
        inv = 1.0 / n + 1.0 / n_ref
    var = max(pooled * (1.0 - pooled), 1e-12) * inv
    return (share - p_ref) / math.sqrt(var)


def welch_z(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float, n_b: float | None) -> float:
    """z statistic of mean_a - mean_b with Welch's standard error (``n_b=None``: b is exact)."""
    se2 = var_a / max(n_a, 1.0) + (0.0 if n_b is None else var_b / max(n_b, 1.0))
    return (mean_a - mean_b) / math.sqrt(max(se2, 1e-18))
