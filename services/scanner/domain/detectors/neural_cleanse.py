"""Neural Cleanse: reverse-engineer a minimal trigger per class and flag unusually small ones.

Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks",
IEEE S&P 2019. For every class t we optimise a mask m (over H x W, shared across channels; over
features for flat inputs) and a pattern p so that ``(1 - m) * x + m * p`` is classified as t, with
an L1 penalty on m whose weight is adapted to keep the attack success high. A backdoor target
needs a much smaller mask than the other classes; the anomaly index is the robust z-score
(median / MAD) of the mask L1 norms, flagged above 2 in the paper.

All classes are optimised together in one batch (K x B samples per step), so a 10-class scan costs
one forward/backward per step. When a clean earlier version of the same model is available, its
per-class mask sizes (``baseline_l1``) replace the median as reference: classes that are naturally
easy to reach no longer look anomalous.

v2 adds a second, forward-only cue that tells a planted trigger from a naturally small one: its
*persistence*. Each class's reversed trigger is stamped on held-out clean inputs of other classes
(not used by the optimiser), which are then superimposed with other clean inputs (STRIP's
perturbation, Gao et al. ACSAC 2019, applied to the reversed trigger). A backdoor is a dominant
feature and keeps the prediction on the target; a natural small trigger (a few strokes of the class)
is a fragile, adversarial-like edit and mostly does not. The per-class index is the mean of the two
robust z-scores (small mask, high persistence) scaled by sqrt(2).

Known limits: it assumes a small, input-agnostic patch-like trigger; blended whole-image triggers,
input-specific and warping triggers (WaNet), and all-to-all attacks are usually missed. On small
models some clean classes have naturally small triggers, so the raw index needs calibration. The
result depends on the optimiser budget; the score is an anomaly index, not a probability.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.scanner.domain.detectors.base import Detector, Finding, register
from services.scanner.domain.model import Dataset, FloatArray, ModelHandle, softmax
from services.scanner.domain.stats import Adam, robust_z, sigmoid

DEFAULT_THRESHOLD = 3.0
PERSIST_FLOOR = 0.05  # persistence is a share; a near-constant profile must not blow up the z-score


@register
class NeuralCleanse(Detector):
    """Per-class trigger reverse engineering with a MAD anomaly index."""

    key = "neural_cleanse.v2"
    level = "model"
    default_threshold = DEFAULT_THRESHOLD
    baseline_threshold = 3.0  # ratios to a clean baseline spread differently

    def __init__(self, *, steps: int = 600, batch_size: int = 32, lr: float = 0.1, init_cost: float = 1e-3,
                 target_success: float = 0.95, max_samples: int = 200,
                 max_seconds: float | None = 30.0, baseline_l1: Sequence[float] | None = None,
                 persistence_alpha: float = 0.5, threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold, seed=seed)
        self._require("steps", steps, isinstance(steps, int) and steps >= 10, "need an int >= 10")
        self._require("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1)
        self._require("lr", lr, lr > 0)
        self._require("init_cost", init_cost, init_cost > 0)
        self._require("target_success", target_success, 0 < target_success <= 1)
        self._require("max_samples", max_samples, isinstance(max_samples, int) and max_samples >= batch_size)
        self._require("max_seconds", max_seconds, max_seconds is None or max_seconds > 0)
        self._require("baseline_l1", baseline_l1, baseline_l1 is None or min(baseline_l1, default=0) > 0,
                      "positive per-class mask sizes")
        self.steps, self.batch_size, self.lr, self.init_cost = steps, batch_size, lr, init_cost
        self.target_success, self.max_samples, self.baseline_l1 = target_success, max_samples, baseline_l1
        self._require("persistence_alpha", persistence_alpha, 0 <= persistence_alpha < 1, "0 turns the cue off")
        self.max_seconds, self.persistence_alpha = max_seconds, persistence_alpha

    def effective_threshold(self) -> float:
        if self.baseline_l1 is not None and self.threshold is None and not hasattr(self, "threshold_"):
            return self.baseline_threshold
        return super().effective_threshold()

    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding:
        x = data.subset(self.max_samples, self.seed).x
        masks, patterns, l1, success = reverse_triggers(model, x, self, rng)
        k = model.num_classes
        base = None
        if self.baseline_l1 is not None:
            self._require("baseline_l1", len(self.baseline_l1), len(self.baseline_l1) == k, f"need {k} values")
            base = np.asarray(self.baseline_l1, dtype=float)
        persist = (persistence(model, data, masks, patterns, self.persistence_alpha, rng)
                   if self.persistence_alpha > 0 else None)
        anomaly = _anomaly(l1, base, persist)
        ranking = [int(c) for c in np.argsort(-anomaly)]
        thr = self.effective_threshold()
        targets = [c for c in ranking if anomaly[c] > thr] or ranking[:1]
        return Finding(
            score=float(anomaly.max()), target_classes=targets,
            evidence={"l1_norms": [round(float(v), 3) for v in l1],
                      "anomaly_index": [round(float(v), 3) for v in anomaly], "ranking": ranking,
                      "persistence": None if persist is None else [round(float(v), 3) for v in persist],
                      "attack_success": [round(float(v), 3) for v in success],
                      "baseline_used": self.baseline_l1 is not None, "exact_gradients": model.exact_gradients},
            triggers={c: (masks[c], patterns[c]) for c in targets[:3]})


def _anomaly(l1: FloatArray, baseline: FloatArray | None, persist: FloatArray | None = None) -> FloatArray:
    """Per-class anomaly index: robust z of small log mask sizes (relative to ``baseline`` if given),
    joined with the robust z of high trigger persistence when given."""
    ratio = np.log(np.maximum(l1, 1e-6)) - (0.0 if baseline is None else np.log(np.maximum(baseline, 1e-6)))
    small: FloatArray = -robust_z(ratio)
    if persist is None:
        return small
    joined: FloatArray = (small + robust_z(np.asarray(persist, dtype=float), floor=PERSIST_FLOOR)) / np.sqrt(2.0)
    return joined


def anomaly_index(l1: FloatArray, baseline: FloatArray | None = None,
                  persist: FloatArray | None = None) -> tuple[float, list[int]]:
    """Score (max anomaly index) and classes ranked from most to least suspicious."""
    a = _anomaly(np.asarray(l1, dtype=float), baseline, None if persist is None else np.asarray(persist))
    return float(a.max()), [int(c) for c in np.argsort(-a)]


def persistence(model: ModelHandle, data: Dataset, masks: FloatArray, patterns: FloatArray, alpha: float,
                rng: np.random.Generator, repeats: int = 4) -> FloatArray:
    """Per class t: how much t's reversed trigger (masks [K, *mask], patterns [K, *input]) keeps clean
    inputs of other classes on t when each is blended with a random clean input at weight ``alpha``:
    the share classified t with the trigger minus the share without it (blends of two digits drift
    to some classes by themselves, e.g. to an 8). Returns [K]."""
    k, shape = model.num_classes, tuple(model.input_shape)
    m = masks.reshape(k, 1, *([1] if len(shape) == 3 else []), *_mask_shape(shape))
    stamped = ((1 - m) * data.x[None] + m * patterns[:, None]).astype(np.float32)  # [K, N, *shape]
    other = (data.y[None] != np.arange(k)[:, None]).astype(float)  # own-class inputs say nothing
    hits = np.zeros((k, len(data)))
    for _ in range(repeats):
        mix = data.x[rng.integers(len(data), size=len(data))]
        plain = np.argmax(model.predict(((1 - alpha) * data.x + alpha * mix).astype(np.float32)), axis=1)
        blended = ((1 - alpha) * stamped + alpha * mix[None]).reshape(-1, *shape).astype(np.float32)
        pred = np.argmax(model.predict(blended), axis=1).reshape(k, -1)
        hits += (pred == np.arange(k)[:, None]).astype(float) - (plain[None] == np.arange(k)[:, None])
    return (hits * other).sum(axis=1) / (repeats * np.maximum(other.sum(axis=1), 1))  # type: ignore[no-any-return]


def _mask_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return input_shape[-2:] if len(input_shape) == 3 else input_shape


def reverse_triggers(model: ModelHandle, x: FloatArray, cfg: Any, rng: np.random.Generator
                     ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Optimise one (mask, pattern) per class. Returns masks, patterns, mask L1, attack success."""
    k, shape = model.num_classes, tuple(model.input_shape)
    mshape = _mask_shape(shape)
    lo, hi = float(x.min()), float(x.max())
    a = rng.normal(-2.0, 0.1, (k, *mshape))
    b = rng.normal(0.0, 0.1, (k, *shape))
    cost = np.full(k, cfg.init_cost)
    best_l1, best = np.full(k, np.inf), [np.zeros(0)] * k
    opt = Adam([a, b], cfg.lr)
    onehot = np.repeat(np.eye(k, dtype=np.float32), cfg.batch_size, axis=0)
    hits = np.zeros(k)
    bcast = (k, 1, *([1] if len(shape) == 3 else []), *mshape)
    deadline = None if cfg.max_seconds is None else time.perf_counter() + cfg.max_seconds
    for step in range(cfg.steps):
        if deadline is not None and step >= 50 and time.perf_counter() > deadline:
            break  # budget for big models; the best masks so far stand
        xb = x[rng.choice(len(x), size=cfg.batch_size, replace=len(x) < cfg.batch_size)]
        m, p = sigmoid(a).reshape(bcast), lo + (hi - lo) * sigmoid(b)[:, None]
        xt = ((1 - m) * xb[None] + m * p).astype(np.float32)
        z, gx = model.value_and_grad(xt.reshape(-1, *shape),
                                     lambda z: (softmax(z) - onehot) / cfg.batch_size)
        gx = gx.reshape(k, cfg.batch_size, *shape)
        gm = (gx * (p - xb[None])).sum(axis=1)
        if len(shape) == 3:
            gm = gm.sum(axis=1)
        sa = sigmoid(a)
        succ = (np.argmax(z, axis=1).reshape(k, -1) == np.arange(k)[:, None]).mean(axis=1)
        l1 = sa.reshape(k, -1).sum(axis=1)
        ok = succ >= cfg.target_success
        for c in np.flatnonzero(ok & (l1 < best_l1)):
            best_l1[c], best[c] = l1[c], np.stack([sa[c].ravel(), sigmoid(b[c]).ravel()])
        hits = np.where(ok, hits + 1, 0)
        if step % 5 == 4:
            cost = np.where(hits >= 5, cost * 1.5, cost / 1.5)
        ga = (gm + cost.reshape(-1, *[1] * len(mshape))) * sa * (1 - sa)
        gb = (gx * m).sum(axis=1) * (hi - lo) * sigmoid(b) * (1 - sigmoid(b))
        opt.step([ga, gb])
    final = sigmoid(a).reshape(k, -1).sum(axis=1)
    l1 = np.where(np.isfinite(best_l1), best_l1, final + float(np.prod(mshape)))
    masks = np.stack([best[c][0] if best[c].size else sigmoid(a[c]).ravel() for c in range(k)])
    pats = np.stack([best[c][1] if best[c].size else sigmoid(b[c]).ravel() for c in range(k)])
    success = np.isfinite(best_l1).astype(float)
    return (masks.reshape(k, *mshape).astype(np.float32), (lo + (hi - lo) * pats).reshape(k, *shape).astype(np.float32),
            l1, success)
