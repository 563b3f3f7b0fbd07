"""Trigger response: find the target with Neural Cleanse, then the training samples that carry it.

Builds on the input filter of Wang et al., "Neural Cleanse", IEEE S&P 2019 (Sec. VI-A: inputs
whose penultimate activations respond like the reversed trigger are adversarial) and on the k-NN
label check of Peri et al., ECCV-W 2020. Steps: (1) reverse-engineer a trigger per class on the
training inputs and take the class with the largest anomaly index (flagged above ``threshold``);
(2) stamp that trigger on inputs of other classes and take the direction from the class's mean
penultimate activation to the stamped mean; (3) split the class by 2-means on its reduced penultimate
activations (as Activation Clustering, Chen et al. 2018, does) joined with two standardised cues,
weighted up: the projection on that direction and the share of input-space neighbours with another
label (poisoned inputs still look like their source class). The side where the cues are higher is
suspicious (not the smaller side: poison can be most of a class).

v2 (:class:`TriggerResponseV2`) adds a third cue to the split, STRIP robustness (Gao et al., ACSAC
2019: the mean prediction entropy when other training inputs are superimposed, low for inputs whose
trigger dominates). The neighbour cue fails when a patch is large against the image (poisoned inputs
become each other's nearest neighbours) and the trigger direction when the reversed trigger is only
part of the real one; the split then cut the poison in half. Below its threshold v2 still splits the
candidate class and offers the split as ``evidence["suspect_sides"]``: when other detectors name that
class, the verdict policy counts it as one more per-sample opinion.

Known limits: inherits Neural Cleanse's limits for finding the target (large or input-specific
triggers, several targets: only the top class is examined); needs the trained (backdoored) model;
on a clean model with a naturally anomalous class it quarantines part of that class, so the class
threshold matters; costs one Neural Cleanse run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from services.scanner.domain.cluster import pca, two_means
from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.detectors.label_consistency import foreign_share
from services.scanner.domain.detectors.neural_cleanse import NeuralCleanse, anomaly_index, reverse_triggers
from services.scanner.domain.detectors.strip import StripGuard
from services.scanner.domain.model import Dataset, ModelHandle

Arr = np.ndarray[Any, Any]


def _standard(v: Arr) -> Arr:
    return (v - v.mean()) / (v.std() + 1e-9)  # type: ignore[no-any-return]


@register
class TriggerResponse(Detector):
    """Neural-Cleanse-guided poisoned-sample filter for training data."""

    key = "trigger_response.v1"
    level = "data"
    default_threshold = 3.0
    offers_split: ClassVar[bool] = False  # split the candidate class even below threshold (evidence only)

    def __init__(self, *, steps: int = 300, k: int = 60, max_seconds: float | None = 600.0,
                 threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("steps", steps, isinstance(steps, int) and steps >= 10)
        self._require("k", k, isinstance(k, int) and k >= 1)
        self._require("max_seconds", max_seconds, max_seconds is None or max_seconds > 0)
        self.steps, self.k, self.max_seconds = steps, k, max_seconds

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        nc = NeuralCleanse(steps=self.steps, max_seconds=self.max_seconds, seed=self.seed)
        sub = data.subset(nc.max_samples, self.seed)
        masks, patterns, l1, _ = reverse_triggers(model, sub.x, nc, rng)
        score, ranking = anomaly_index(l1)
        t = ranking[0]
        idx = np.flatnonzero(data.y == t)
        evidence: dict[str, Any] = {"candidate_class": t, "ranking": ranking,
                                    "l1_norms": [round(float(v), 3) for v in l1]}
        flagged = score > self.effective_threshold()
        if len(idx) < 8 or not (flagged or self.offers_split):
            return Finding(score=score, target_classes=[t], evidence=evidence)
        layer = model.layers()[-1]
        acts = model.activations(data.x[idx], layer)
        others = data.x[data.y != t][:200]
        mask = masks[t][None, None] if others.ndim == 4 else masks[t][None]
        stamped = model.activations(((1 - mask) * others + mask * patterns[t][None]).astype(np.float32), layer)
        direction = stamped.mean(axis=0) - acts.mean(axis=0)
        proj = (acts - acts.mean(axis=0)) @ direction / (np.linalg.norm(direction) + 1e-12)
        foreign = foreign_share(data.x.reshape(len(data), -1), data.y, min(self.k, len(data) - 1))[idx]
        # Activation Clustering's split of the class separates the poison; the trigger response and
        # the foreign-neighbour share say which side it is (the smaller side is not, above 50% poison).
        reduced = pca(acts, min(10, len(idx) - 1, acts.shape[1]))
        cues = np.stack([_standard(proj), _standard(foreign)] + [_standard(c) for c in self._extra_cues(
            model, data, idx)], axis=1)
        labels = two_means(np.concatenate([reduced / (reduced[:, 0].std() + 1e-9), 2.0 * cues], axis=1), rng)
        hotness = cues.sum(axis=1)
        hot = int(np.argmax([hotness[labels == j].mean() if np.any(labels == j) else -np.inf for j in (0, 1)]))
        suspicious = [int(i) for i in idx[labels == hot]]
        evidence.update(suspicious_share_of_class=round(len(suspicious) / len(idx), 3))
        if not flagged:  # below threshold the split is only an opinion on the candidate class (see policy)
            evidence["suspect_sides"] = {str(t): suspicious}
            return Finding(score=score, target_classes=[t], evidence=evidence)
        return Finding(score=score, target_classes=[t], suspicious_indices=suspicious, evidence=evidence)

    def _extra_cues(self, model: ModelHandle, data: Dataset, idx: Arr) -> list[Arr]:
        """Further per-sample cues for the samples ``idx`` of the candidate class (higher = poison)."""
        return []


@register
class TriggerResponseV2(TriggerResponse):
    """Trigger response whose class split also weighs STRIP robustness (see the module notes)."""

    key = "trigger_response.v2"
    offers_split = True

    def __init__(self, *, steps: int = 300, k: int = 60, max_seconds: float | None = 600.0,
                 n_perturbations: int = 16, alpha: float = 0.5, threshold: float | None = None,
                 seed: int = 0) -> None:
        super().__init__(steps=steps, k=k, max_seconds=max_seconds, threshold=threshold, seed=seed)
        self._require("n_perturbations", n_perturbations, isinstance(n_perturbations, int) and n_perturbations >= 2)
        self._require("alpha", alpha, 0 < alpha < 1)
        self.n_perturbations, self.alpha = n_perturbations, alpha

    def _extra_cues(self, model: ModelHandle, data: Dataset, idx: Arr) -> list[Arr]:
        guard = StripGuard(n_perturbations=self.n_perturbations, alpha=self.alpha, seed=self.seed).fit(model, data.x)
        return [-guard.entropy(data.x[idx])]
