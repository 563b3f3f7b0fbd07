"""Joint split: partition every class by the model's view of it *and* per-sample poison cues.

Activation Clustering (Chen et al., arXiv 1811.03728, 2018) splits each class by 2-means on its
reduced penultimate activations: dirty-label poison that the model learned through a trigger sits in
its own cluster. Alone, the split is often off (clean classes split by writing style; the boundary
cuts into clean samples) and it cannot tell which side is poison. Here the split is made on the
activations (PCA, in units of the first component's spread) joined with two per-sample cues,
each standardised within the class:

* label inconsistency (deep k-NN, Peri et al., ECCV-W 2020): the share of a sample's input-space
  neighbours that carry another label. A stamped digit still looks like its source class.
* STRIP robustness (Gao et al., ACSAC 2019): low prediction entropy when other inputs are
  superimposed. A trigger dominates the prediction.

The side of the split where the cues are higher is the candidate poison. A class's *suspicious mass*
is that side's share of the class times its mean cue contrast to the other side (in units of the
cues' spread over the whole set); the score is the robust z of the masses across classes (most
classes are clean). Cues are averaged, not required together, so a trigger that does not survive
blending (STRIP blind) or a high poison rate (poison samples become each other's neighbours) still
leaves the other cue and the activation split. The split of every class above the median is also
reported, flagged or not, as ``evidence["suspect_sides"]``: when other detectors name such a class, the
verdict policy takes it as one more per-sample opinion (the split is often right where the class
score is modest, e.g. a patch large against the image).

Known limits: the class score needs most classes to be clean and a poisoned share of the class that
stands out (very low poison rates, below a few percent of a class, do not); clean-label attacks
weaken the neighbour cue and triggers that do not survive blending the STRIP cue, so both together
are missed; a class that is naturally robust to superimposition and looks unlike its neighbours can
be named on a clean model (the score is a z over ten-odd classes). Input-space neighbours suit
small, aligned inputs (digits, tabular); on natural images a feature layer is a better space
(``neighbour_layer``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.scanner.domain.cluster import pca, two_means
from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.detectors.label_consistency import foreign_share
from services.scanner.domain.detectors.strip import StripGuard
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.domain.stats import robust_z

Arr = np.ndarray[Any, Any]
MASS_FLOOR = 0.1  # smallest spread of class masses: a class must carry ~0.3 extra share x contrast to reach z 3


def _standard(v: Arr) -> Arr:
    return (v - v.mean()) / (v.std() + 1e-9)  # type: ignore[no-any-return]


def split_class(acts: Arr, cues: Arr, dims: int, rng: np.random.Generator) -> Arr:
    """Boolean mask of the hot side of a 2-means split of one class on [PCA(acts), standardised cues].

    ``cues`` [n, c] are oriented so that higher is more suspicious; the hot side is the cluster with the
    higher mean cue sum.
    """
    red = pca(acts, min(dims, len(acts) - 1, acts.shape[1]))
    red = red / (red[:, 0].std() + 1e-9)
    z = np.stack([_standard(c) for c in cues.T], axis=1)
    labels = two_means(np.concatenate([red, z], axis=1), rng)
    hotness = z.sum(axis=1)
    hot = int(np.argmax([hotness[labels == j].mean() if np.any(labels == j) else -np.inf for j in (0, 1)]))
    return labels == hot  # type: ignore[no-any-return]


@register
class JointSplit(Detector):
    """Per-class 2-means on penultimate activations joined with label-inconsistency and STRIP cues."""

    key = "joint_split.v1"
    level = "data"
    default_threshold = 3.0

    def __init__(self, *, k: int = 30, n_perturbations: int = 16, alpha: float = 0.5, dims: int = 10,
                 min_class_size: int = 8, layer: str | None = None, neighbour_layer: str | None = "input",
                 threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("k", k, isinstance(k, int) and k >= 1)
        self._require("n_perturbations", n_perturbations, isinstance(n_perturbations, int) and n_perturbations >= 2)
        self._require("alpha", alpha, 0 < alpha < 1)
        self._require("dims", dims, isinstance(dims, int) and dims >= 1)
        self._require("min_class_size", min_class_size, isinstance(min_class_size, int) and min_class_size >= 4)
        self.k, self.n_perturbations, self.alpha, self.dims = k, n_perturbations, alpha, dims
        self.min_class_size, self.layer, self.neighbour_layer = min_class_size, layer, neighbour_layer

    def cues(self, model: ModelHandle, data: Dataset) -> Arr:
        """Per-sample cues [N, 2], higher = more suspicious: foreign-neighbour share, minus STRIP entropy."""
        if self.neighbour_layer == "input":
            feats = data.x.reshape(len(data), -1)
        else:
            feats = model.activations(data.x, self.neighbour_layer or model.layers()[0])
        foreign = foreign_share(feats, data.y, min(self.k, len(data) - 1))
        guard = StripGuard(n_perturbations=self.n_perturbations, alpha=self.alpha, seed=self.seed).fit(model, data.x)
        return np.stack([foreign, -guard.entropy(data.x)], axis=1)

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        cues = self.cues(model, data)
        spread = cues.std(axis=0) + 1e-9
        acts = model.activations(data.x, self.layer or model.layers()[-1])
        classes = np.unique(data.y)
        mass = np.zeros(len(classes))
        hot_sets: dict[int, Arr] = {}
        per_class: dict[str, dict[str, float]] = {}
        for j, c in enumerate(classes):
            idx = np.flatnonzero(data.y == c)
            if len(idx) < self.min_class_size:
                continue
            hot = split_class(acts[idx], cues[idx], self.dims, rng)
            if hot.all() or not hot.any():
                continue
            contrast = (cues[idx][hot].mean(axis=0) - cues[idx][~hot].mean(axis=0)) / spread
            mass[j] = hot.mean() * contrast.mean()
            hot_sets[int(c)] = idx[hot]
            per_class[str(int(c))] = {"hot_share": round(float(hot.mean()), 3),
                                      "foreign_contrast": round(float(contrast[0]), 3),
                                      "strip_contrast": round(float(contrast[1]), 3)}
        z = robust_z(mass, floor=MASS_FLOOR)
        for j, c in enumerate(classes):
            if str(int(c)) in per_class:
                per_class[str(int(c))]["z"] = round(float(z[j]), 3)
        thr = self.effective_threshold()
        order = np.argsort(-z, kind="stable")
        flagged = [int(classes[j]) for j in order if z[j] > thr]
        suspicious = sorted(int(i) for c in flagged for i in hot_sets.get(c, []))
        # The split of a class stands on its own: for classes above the median (candidates, flagged or
        # not) it is a per-sample opinion the verdict policy can use when other detectors name the class.
        sides = {str(int(classes[j])): [int(i) for i in hot_sets[int(classes[j])]]
                 for j in order if z[j] > 0 and int(classes[j]) in hot_sets}
        return Finding(score=float(z.max()), target_classes=flagged, suspicious_indices=suspicious,
                       evidence={"per_class": per_class, "candidate_class": int(classes[order[0]]),
                                 "ranking": [int(classes[j]) for j in order], "suspect_sides": sides})
