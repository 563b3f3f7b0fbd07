"""Combined verdict: many detector results -> one decision with a confidence. Pure."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.scanner.domain.detectors.base import DetectionResult


@dataclass(frozen=True)
class VerdictPolicy:
    """How detector results combine.

    A detector's probability of a backdoor is ``sigmoid(sharpness * (score / threshold - 1))``
    (0.5 at its threshold). Probabilities of flagging detectors are combined noisy-OR; the model is
    reported backdoored when at least ``min_flags`` detectors flag it, and deployment is blocked when
    the confidence reaches ``block_confidence``. At data level, when the sample labels are given,
    suspicious samples are kept only in classes whose vote reaches ``class_vote_share`` of the top
    class's vote: a detector that names the wrong class (a naturally odd class) does not quarantine it
    when the others agree on another.
    """

    sharpness: float = 4.0
    min_flags: int = 1
    block_confidence: float = 0.9
    min_votes: int = 1  # data level: detectors that must agree on a sample
    class_vote_share: float = 0.5  # data level: keep samples of classes with this share of the top vote

    def __post_init__(self) -> None:
        if self.sharpness <= 0 or self.min_flags < 1 or self.min_votes < 1 or not 0 < self.block_confidence <= 1 \
                or not 0 <= self.class_vote_share <= 1:
            raise ValueError(f"invalid policy {self!r}")


@dataclass(frozen=True)
class Verdict:
    backdoor_detected: bool
    confidence: float
    target_classes: list[int]
    block_deployment: bool
    results: list[DetectionResult] = field(default_factory=list)
    suspicious_indices: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backdoor_detected": self.backdoor_detected, "confidence": round(self.confidence, 4),
                "target_classes": self.target_classes, "block_deployment": self.block_deployment,
                "suspicious_indices": self.suspicious_indices,
                "detectors": [r.to_dict() for r in self.results],
                "timings": {r.key: round(r.seconds, 3) for r in self.results}}


def _prob(r: DetectionResult, sharpness: float) -> float:
    ratio = r.score / r.threshold if r.threshold > 0 else (math.inf if r.score > r.threshold else 0.0)
    return 1.0 / (1.0 + math.exp(-max(min(sharpness * (ratio - 1.0), 50.0), -50.0)))


def combine(results: Sequence[DetectionResult], policy: VerdictPolicy | None = None,
            labels: Sequence[int] | None = None) -> Verdict:
    """Combine per-detector results into one verdict (model or data level).

    Args:
        results: One result per detector.
        policy: Combination rule; the defaults when ``None``.
        labels: Data level only: the label of every sample [N], to keep suspicious samples to the
            classes the detectors agree on.
    """
    policy = policy or VerdictPolicy()
    flagged = [r for r in results if r.flagged]
    probs = {r.key: _prob(r, policy.sharpness) for r in results}
    detected = len(flagged) >= policy.min_flags
    # With no flag, confidence says how close the most suspicious detector came (below 0.5).
    confidence = (1.0 - math.prod(1.0 - probs[r.key] for r in flagged)) if flagged else max(
        probs.values(), default=0.0)
    votes: dict[int, float] = {}
    for r in flagged:  # a class named first by a confident detector ranks first
        for rank, c in enumerate(r.target_classes):
            votes[c] = votes.get(c, 0.0) + probs[r.key] / (1 + rank)
    targets = [c for c, _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))] if detected else []
    sample_votes = Counter(i for r in flagged for i in r.suspicious_indices)
    suspicious = sorted(i for i, v in sample_votes.items() if v >= policy.min_votes)
    if labels is not None and votes:
        top = max(votes.values())
        keep = {c for c, v in votes.items() if v >= policy.class_vote_share * top}
        suspicious = [i for i in suspicious if int(labels[i]) in keep]
    return Verdict(detected, float(confidence), targets, detected and confidence >= policy.block_confidence,
                   list(results), suspicious)
