"""PCA, 2-means and silhouette in numpy (the domain may not import scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]


def pca(a: Arr, dims: int) -> Arr:
    """Project centred rows of ``a`` [N, F] on their top ``dims`` principal axes -> [N, dims]."""
    c = a - a.mean(axis=0)
    _u, _s, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:dims].T  # type: ignore[no-any-return]


def two_means(a: Arr, rng: np.random.Generator, restarts: int = 4, iters: int = 50) -> Arr:
    """Labels (0/1) of the best of ``restarts`` k-means++ runs with k = 2 on rows of ``a``."""
    best, best_inertia = np.zeros(len(a), dtype=np.int64), np.inf
    for _ in range(restarts):
        c0 = a[rng.integers(len(a))]
        d = ((a - c0) ** 2).sum(axis=1)
        c1 = a[rng.choice(len(a), p=d / d.sum())] if d.sum() > 0 else c0
        cent = np.stack([c0, c1])
        for _ in range(iters):
            lab = np.argmin(((a[:, None] - cent[None]) ** 2).sum(axis=2), axis=1)
            new = np.stack([a[lab == j].mean(axis=0) if np.any(lab == j) else cent[j] for j in (0, 1)])
            if np.allclose(new, cent):
                break
            cent = new
        inertia = float(((a - cent[lab]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = lab, inertia
    return best


def silhouette(a: Arr, labels: Arr) -> float:
    """Mean silhouette coefficient for a two-cluster labelling (0 when one cluster is empty)."""
    if len(np.unique(labels)) < 2:
        return 0.0
    sq = (a**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * a @ a.T, 0.0))
    same = labels[:, None] == labels[None]
    n_same = same.sum(axis=1) - 1
    intra = np.where(n_same > 0, (dist * same).sum(axis=1) / np.maximum(n_same, 1), 0.0)
    inter = (dist * ~same).sum(axis=1) / np.maximum((~same).sum(axis=1), 1)
    s = np.where(n_same > 0, (inter - intra) / np.maximum(np.maximum(inter, intra), 1e-12), 0.0)
    return float(s.mean())
