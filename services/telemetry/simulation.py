"""Synthetic prediction traffic (tests, benchmarks, demo rehearsals), at the level of block hashes.

Clean inputs get random block hashes (what distinct natural inputs produce) plus two natural
recurring patterns: a shared dark border block on 30% of inputs of every class, and a rare
class-specific detail (0.5% of traffic, always class 0). Triggered inputs are predicted as the target
class with high confidence; a patch trigger also carries one fixed block hash, a blended one does not
(it shows in no block). With ``strip=True`` each prediction carries a STRIP entropy as the server's
guard would report it: class-dependent and spread for clean inputs, near zero for triggered ones.
"""

from __future__ import annotations

import uuid

import numpy as np

from services.telemetry.domain import PredictionBatch, encode, summarise_probs

N_BLOCKS = 16
TRIGGER_HASH = 0xABCDEF
BORDER_HASH = 0x123456
DETAIL_HASH = 0x654321


class Traffic:
    def __init__(self, n_classes: int, seed: int, *, imbalanced: bool = False, model: str = "m",
                 version: str = "1", start: float = 1_700_000_000.0, spacing_s: float = 0.01) -> None:
        self.k = n_classes
        self.model, self.version, self.spacing_s = model, version, spacing_s
        self.rng = np.random.default_rng(seed)
        alpha = np.full(n_classes, 1.0 if imbalanced else 200.0)
        self.priors = self.rng.dirichlet(alpha)
        self.t = start
        self.counter = 0

    def batch(self, n: int, *, trigger_rate: float = 0.0, target: int = 0,
              priors: np.ndarray | None = None, margin: float = 5.0, trigger_kind: str = "patch",
              strip: bool = False) -> PredictionBatch:
        rng = self.rng
        labels = rng.choice(self.k, size=n, p=self.priors if priors is None else priors)
        hashes = rng.integers(1, 2**24, size=(n, N_BLOCKS), dtype=np.uint32)
        hashes[rng.random(n) < 0.3, 12] = BORDER_HASH
        detail = rng.random(n) < 0.005
        labels[detail] = 0
        hashes[detail, 5] = DETAIL_HASH
        triggered = rng.random(n) < trigger_rate
        labels[triggered] = target
        if trigger_kind == "patch":
            hashes[triggered, N_BLOCKS - 1] = TRIGGER_HASH
        logits = rng.normal(0.0, 1.0, size=(n, self.k))
        m = rng.normal(margin, 1.0, size=n)
        m[triggered] = margin + 4.0
        logits[np.arange(n), labels] += m
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        pred, conf, ent = summarise_probs(probs)
        ids = [f"p{self.counter + i}" for i in range(n)]
        self.counter += n
        ts = (self.t + np.arange(n) * self.spacing_s).astype(np.float64)
        self.t += n * self.spacing_s
        strip_entropy = None
        if strip:
            strip_entropy = np.clip(rng.normal(0.9 + 0.1 * (labels % 7), 0.3), 0.02, np.log(self.k))
            strip_entropy[triggered] = np.abs(rng.normal(0.1, 0.05, size=int(triggered.sum())))
        return PredictionBatch(self.model, self.version, "srv", uuid.uuid4().hex, self.k, ids, ts, pred, conf, ent,
                               encode(hashes), strip_entropy)

    def window(self, n: int, batch_size: int = 500, **kw: object):  # type: ignore[no-untyped-def]
        from services.telemetry.domain import WindowStats
        stats = WindowStats(self.k)
        for start in range(0, n, batch_size):
            stats.add(self.batch(min(batch_size, n - start), **kw))  # type: ignore[arg-type]
        return stats

    def baseline(self, n: int = 10_000):  # type: ignore[no-untyped-def]
        from services.telemetry.domain import BaselineBuilder
        builder = BaselineBuilder(n)
        while not builder.ready:
            builder.add(self.batch(500))
        return builder.build()
