"""Activation Clustering: poisoned training samples form their own cluster in the target class.

Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering",
AAAI SafeAI workshop 2019 (arXiv 1811.03728). Penultimate activations of each class are reduced
(the paper uses ICA to 10 dims; we use PCA, which is deterministic), split by 2-means, and the
smaller cluster is suspicious when it is small (relative size below ``max_relative_size``) and the
split is good (silhouette).

IBM ART flags the smaller cluster of *every* class, because 2-means always splits. Here a class is
flagged only when its silhouette is an outlier among the classes (robust z-score above
``threshold``) and above ``min_silhouette``: most classes are clean, so they are the reference.

Known limits: needs the poisoned training data and enough samples per class (~30+); a poison rate
above ~35% of a class, or several poisoned classes out of few, breaks the reference; clean-label and
feature-space-adaptive attacks (which keep poisoned activations inside the clean cluster) evade it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.scanner.domain.cluster import pca, silhouette, two_means
from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.domain.stats import robust_z

Arr = np.ndarray[Any, Any]


def split_classes(feats: Arr, y: Arr, dims: int, rng: np.random.Generator,
                  max_samples: int = 400) -> dict[int, tuple[Arr, float, float]]:
    """Per class: indices of the smaller 2-means cluster, its relative size, the silhouette."""
    out: dict[int, tuple[Arr, float, float]] = {}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 8:
            continue
        red = pca(feats[idx], min(dims, len(idx) - 1, feats.shape[1]))
        lab = two_means(red, rng)
        small = int(np.argmin(np.bincount(lab, minlength=2)))
        sub = rng.choice(len(idx), size=min(len(idx), max_samples), replace=False)
        out[int(c)] = (idx[lab == small], float(np.mean(lab == small)), silhouette(red[sub], lab[sub]))
    return out


@register
class ActivationClustering(Detector):
    """2-means per class on reduced penultimate activations; outlier classes only."""

    key = "activation_clustering.v1"
    level = "data"
    default_threshold = 3.0

    def __init__(self, *, dims: int = 10, max_relative_size: float = 0.35, min_silhouette: float = 0.15,
                 layer: str | None = None, threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("dims", dims, isinstance(dims, int) and dims >= 1)
        self._require("max_relative_size", max_relative_size, 0 < max_relative_size <= 0.5)
        self._require("min_silhouette", min_silhouette, -1 <= min_silhouette <= 1)
        self.dims, self.max_relative_size = dims, max_relative_size
        self.min_silhouette, self.layer = min_silhouette, layer

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        feats = model.activations(data.x, self.layer or model.layers()[-1])
        splits = split_classes(feats, data.y, self.dims, rng)
        classes = sorted(splits)
        sil = np.array([splits[c][2] for c in classes])
        z = robust_z(sil)
        eligible = np.array([splits[c][1] <= self.max_relative_size and splits[c][2] >= self.min_silhouette
                             for c in classes])
        scores = np.where(eligible, z, np.minimum(z, 0.0))
        thr = self.effective_threshold()
        flagged = [c for c, s in zip(classes, scores, strict=True) if s > thr]
        return Finding(
            score=float(scores.max()), target_classes=flagged,
            suspicious_indices=sorted(int(i) for c in flagged for i in splits[c][0]),
            evidence={"per_class": {str(c): {"relative_size": round(splits[c][1], 3),
                                             "silhouette": round(splits[c][2], 3), "z": round(float(s), 3)}
                                    for c, s in zip(classes, scores, strict=True)}})
