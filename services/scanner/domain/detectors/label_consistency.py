"""Label consistency (deep k-NN): poisoned samples look like their source class, not their label.

Peri et al., "Deep k-NN Defense against Clean-label Data Poisoning Attacks", ECCV workshops 2020;
here applied to dirty-label backdoors in the model's *first* layer (or input space), where a
stamped digit still resembles its source class while its label is the target. A sample is
inconsistent when more than half of its ``k`` nearest neighbours carry another label. A target
class is flagged when its share of inconsistent samples is a robust outlier among classes.

Known limits: clean-label attacks (poisons are genuinely of the target class) and triggers that
dominate the early representation are missed; a very high poison rate (poisons outnumbering the
clean target samples) makes poisons each other's neighbours; O(N^2) memory, so large sets are
processed in chunks of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.domain.stats import robust_z

Arr = np.ndarray[Any, Any]


def nearest_neighbours(feats: Arr, k: int, chunk: int = 2048) -> Iterator[tuple[slice, Arr]]:
    """The indices of every sample's ``k`` nearest other samples (Euclidean), ``chunk`` rows at a time:
    (the rows' slice, their neighbour indices [rows, k])."""
    f = feats.astype(np.float32)
    sq = (f**2).sum(axis=1)
    for s in range(0, len(f), chunk):
        d = sq[s:s + chunk, None] + sq[None] - 2 * f[s:s + chunk] @ f.T
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        yield slice(s, s + len(d)), np.argpartition(d, k, axis=1)[:, :k]


def foreign_share(feats: Arr, y: Arr, k: int, chunk: int = 2048) -> Arr:
    """Per sample, the share of its ``k`` nearest neighbours (self excluded) with a different label."""
    out = np.empty(len(feats))
    for rows, nn in nearest_neighbours(feats, k, chunk):
        out[rows] = (y[nn] != y[rows, None]).mean(axis=1)
    return out


@register
class LabelConsistency(Detector):
    """k-NN label disagreement in early features, gated by outlier classes."""

    key = "label_consistency.v1"
    level = "data"
    default_threshold = 3.0

    def __init__(self, *, k: int = 30, layer: str | None = "input", threshold: float | None = None,
                 seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("k", k, isinstance(k, int) and k >= 1)
        self.k, self.layer = k, layer

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        if self.layer == "input":
            feats = data.x.reshape(len(data), -1)
        else:
            feats = model.activations(data.x, self.layer or model.layers()[0])
        k = min(self.k, len(data) - 1)
        share = foreign_share(feats, data.y, k)
        classes = np.unique(data.y)
        rate = np.array([np.mean(share[data.y == c] > 0.5) for c in classes])
        cz = robust_z(rate, floor=0.05)
        flagged = [int(c) for c, z in zip(classes, cz, strict=True) if z > self.effective_threshold()]
        bad = (share > 0.5) & np.isin(data.y, flagged)
        return Finding(score=float(cz.max()), target_classes=flagged,
                       suspicious_indices=[int(i) for i in np.flatnonzero(bad)],
                       evidence={"inconsistent_share": {str(int(c)): round(float(r), 3)
                                                        for c, r in zip(classes, rate, strict=True)},
                                 "ranking": [int(classes[j]) for j in np.argsort(-cz, kind="stable")]})
