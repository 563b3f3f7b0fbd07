"""Spectral Signatures: poisoned samples leave a trace along the top singular direction of a class.

Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018. Per class, the
penultimate representations are centred on the class mean (as in the paper) and each sample is
scored by its squared projection on the top right singular vector.

The paper removes the top 1.5 x epsilon scores of *every* class, which on a clean class discards
clean data (and flags about half of a class when epsilon is guessed high). Here a class is only
flagged when its spectral signal is an outlier among classes: the fraction of variance on the top
direction (robust z-score above ``threshold``); in a flagged class the samples whose score is a
robust outlier (above ``sample_z``) are suspicious.

Known limits: needs the poisoned training set; weak when the poison is a small share of a class and
the representation of poisoned inputs is not well separated (adaptive attacks that suppress the
signature); a naturally bimodal clean class can look like a poisoned one.
"""

from __future__ import annotations

import numpy as np

from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.domain.stats import robust_z


@register
class SpectralSignatures(Detector):
    """Top-singular-direction outlier scores per class, with outlier-class gating."""

    key = "spectral_signatures.v1"
    level = "data"
    default_threshold = 3.0

    def __init__(self, *, sample_z: float = 3.0, layer: str | None = None, threshold: float | None = None,
                 seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("sample_z", sample_z, sample_z > 0)
        self.sample_z, self.layer = sample_z, layer

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        feats = model.activations(data.x, self.layer or model.layers()[-1]).astype(np.float64)
        classes = [int(c) for c in np.unique(data.y) if np.sum(data.y == c) >= 8]
        share, scores = [], {}
        for c in classes:
            idx = np.flatnonzero(data.y == c)
            centred = feats[idx] - feats[idx].mean(axis=0)
            _u, s, vt = np.linalg.svd(centred, full_matrices=False)
            share.append(float(s[0] ** 2 / max(float((s**2).sum()), 1e-12)))
            scores[c] = (idx, (centred @ vt[0]) ** 2)
        cz = robust_z(np.asarray(share))
        flagged = [c for c, z in zip(classes, cz, strict=True) if z > self.effective_threshold()]
        suspicious = sorted(int(i) for c in flagged
                            for i in scores[c][0][robust_z(scores[c][1]) > self.sample_z])
        return Finding(score=float(cz.max()), target_classes=flagged, suspicious_indices=suspicious,
                       evidence={"top_direction_share": {str(c): round(v, 4)
                                                         for c, v in zip(classes, share, strict=True)},
                                 "class_z": {str(c): round(float(z), 3) for c, z in zip(classes, cz, strict=True)}})
