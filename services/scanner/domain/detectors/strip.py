"""STRIP: inputs carrying a trigger keep their prediction when other images are superimposed.

Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks", ACSAC 2019. Each
input is blended with ``n_perturbations`` clean samples; the Shannon entropy of each perturbed
prediction is computed over the classes and *averaged over the perturbations* (IBM ART sums over
the wrong axis). Low entropy = trojaned. The threshold is the ``frr`` quantile of clean entropies
(false-rejection rate), as in the paper.

:class:`StripGuard` is the runtime guard (one ``predict`` call per batch of inputs, all their
perturbations included). :class:`StripDetector` applies it to training data for ``scan-data``.

Known limits: triggers that do not survive blending (weak blended triggers, warping, source-specific
triggers) are missed; a trigger covering most of the image confuses superimposition; the guard
assumes the clean pool is representative of deployment inputs.
"""

from __future__ import annotations

import numpy as np

from services.scanner.domain.detectors.base import Detector, Finding, NotFittedError, register
from services.scanner.domain.model import Dataset, FloatArray, ModelHandle
from services.scanner.domain.stats import entropy, robust_z


class StripGuard:
    """Runtime trojan-input guard. ``fit`` on clean samples, then ``is_trojaned(x_batch)``."""

    def __init__(self, *, n_perturbations: int = 16, alpha: float = 0.5, frr: float = 0.01, pool_size: int = 256,
                 seed: int = 0) -> None:
        if not (isinstance(n_perturbations, int) and n_perturbations >= 2):
            raise ValueError(f"invalid n_perturbations={n_perturbations!r}: need an int >= 2")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"invalid alpha={alpha!r}: need 0 < alpha < 1")
        if not 0.0 < frr < 0.5:
            raise ValueError(f"invalid frr={frr!r}: need 0 < frr < 0.5")
        self.n_perturbations, self.alpha, self.frr, self.pool_size, self.seed = (
            n_perturbations, alpha, frr, pool_size, seed)

    def fit(self, model: ModelHandle, clean: FloatArray) -> StripGuard:
        """Keep a pool of clean images and set ``threshold_`` at the ``frr`` quantile of their entropy."""
        rng = np.random.default_rng(self.seed)
        self.model_ = model
        self.pool_ = clean[rng.choice(len(clean), size=min(self.pool_size, len(clean)), replace=False)]
        self.rng_ = rng
        self.clean_entropy_ = self.entropy(clean[: max(self.pool_size, 200)])
        self.threshold_ = float(np.quantile(self.clean_entropy_, self.frr))
        return self

    def entropy(self, x: FloatArray) -> FloatArray:
        """Mean prediction entropy over perturbations, per input [N] (low = trojaned)."""
        if not hasattr(self, "pool_"):
            raise NotFittedError("StripGuard is not fitted; call fit(model, clean) first")
        n, p = len(x), self.n_perturbations
        picks = self.rng_.integers(0, len(self.pool_), size=(n, p))
        blended = (1 - self.alpha) * x[:, None] + self.alpha * self.pool_[picks]
        probs = self.model_.predict(blended.reshape(n * p, *x.shape[1:]).astype(np.float32))
        return entropy(probs).reshape(n, p).mean(axis=1)  # type: ignore[no-any-return]

    def is_trojaned(self, x: FloatArray) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        return self.entropy(x) < self.threshold_


@register
class StripDetector(Detector):
    """STRIP over a training set: flags classes with an outlying share of low-entropy samples."""

    key = "strip.v1"
    level = "data"
    default_threshold = 3.0

    def __init__(self, *, n_perturbations: int = 16, alpha: float = 0.5, sample_z: float = 3.0,
                 threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("n_perturbations", n_perturbations, isinstance(n_perturbations, int) and n_perturbations >= 2)
        self._require("alpha", alpha, 0 < alpha < 1)
        self._require("sample_z", sample_z, sample_z > 0)
        self.n_perturbations, self.alpha, self.sample_z = n_perturbations, alpha, sample_z

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        guard = StripGuard(n_perturbations=self.n_perturbations, alpha=self.alpha, seed=self.seed).fit(model, data.x)
        ent = guard.entropy(data.x)
        # The training set is mostly clean: per class, the reference is that class's own entropy profile.
        z = np.zeros(len(ent))
        for c in np.unique(data.y):
            idx = data.y == c
            z[idx] = -robust_z(ent[idx], reference=ent[data.y != c])
        low = z > self.sample_z
        classes = np.unique(data.y)
        share = np.array([low[data.y == c].mean() for c in classes])
        cz = robust_z(share, floor=0.02)
        flagged = [int(c) for c, s in zip(classes, cz, strict=True) if s > self.effective_threshold()]
        return Finding(score=float(cz.max()), target_classes=flagged,
                       suspicious_indices=[int(i) for i in np.flatnonzero(low & np.isin(data.y, flagged))],
                       evidence={"low_entropy_share": {str(int(c)): round(float(s), 3)
                                                       for c, s in zip(classes, share, strict=True)},
                                 "mean_entropy": round(float(ent.mean()), 4),
                                 "ranking": [int(classes[j]) for j in np.argsort(-cz, kind="stable")]})
