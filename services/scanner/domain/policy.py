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
    when the others agree on another. Within a kept class, a sample is quarantined when at least
    ``sample_agreement`` of the detectors that named the class flag it (each detector's split of a
    class errs on different samples; agreement keeps the poison they share).
    """

    sharpness: float = 4.0
    min_flags: int = 1
    block_confidence: float = 0.9
    min_votes: int = 1  # data level: detectors that must agree on a sample
    class_vote_share: float = 0.5  # data level: keep samples of classes with this share of the top vote
    sample_agreement: float = 0.5  # data level: share of the detectors naming a class that must flag a sample
    quarantine_confidence: float = 0.8  # data level: the most confident class's noisy-OR, or nothing is quarantined
    class_support: int = 2  # data level: detectors (flagging or not) that must rank a class first to quarantine it

    def __post_init__(self) -> None:
        if self.sharpness <= 0 or self.min_flags < 1 or self.min_votes < 1 or not 0 < self.block_confidence <= 1 \
                or not 0 <= self.class_vote_share <= 1:
            raise ValueError(f"invalid policy {self!r}")
        if not (0 <= self.sample_agreement <= 1 and 0 <= self.quarantine_confidence < 1 and self.class_support >= 1):
            raise ValueError(f"invalid policy {self!r}: need sample_agreement in [0, 1], quarantine_confidence "
                             "in [0, 1) and class_support >= 1")


@dataclass(frozen=True)
class Verdict:
    backdoor_detected: bool
    confidence: float
    target_classes: list[int]
    block_deployment: bool
    results: list[DetectionResult] = field(default_factory=list)
    suspicious_indices: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats on the whole verdict (e.g. a small clean set)
    input_layout: str = "flat"  # how the input was read: "flat", "channels_first" or "channels_last"

    def to_dict(self) -> dict[str, Any]:
        return {"backdoor_detected": self.backdoor_detected, "confidence": round(self.confidence, 4),
                "target_classes": self.target_classes, "block_deployment": self.block_deployment,
                "suspicious_indices": self.suspicious_indices, "notes": self.notes,
                "input_layout": self.input_layout,
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
    suspicious = data_level_samples(results, probs, votes, policy, labels)
    return Verdict(detected, float(confidence), targets, detected and confidence >= policy.block_confidence,
                   list(results), suspicious)


def data_level_samples(results: Sequence[DetectionResult], probs: dict[str, float], votes: dict[int, float],
                       policy: VerdictPolicy, labels: Sequence[int] | None) -> list[int]:
    """Suspicious sample indices from data-level detector results (``votes``: class votes of the flagging ones).

    Without labels: every sample flagged by at least ``min_votes`` flagging detectors. With labels, a
    class is quarantined only when

    * its confidence (noisy-OR of the probabilities of the detectors naming it) or another kept
      class's reaches ``quarantine_confidence`` -- a lone detector just over its threshold on a
      naturally odd class of a clean set quarantines nothing;
    * at least ``class_support`` detectors, flagging or not, rank it first (``evidence["ranking"]``;
      the requirement is capped at the number of results that carry a ranking) -- a single detector
      confidently naming a class none of the others leans to (Neural Cleanse's naturally small
      trigger of a clean class) is not enough;
    * its vote reaches ``class_vote_share`` of the top class's vote;

    and there only samples flagged by at least ``sample_agreement`` of the detectors that named the
    class (and by ``min_votes``) are kept: each detector's split of a class errs on different samples.

    A flagging detector whose finding spans every class (``evidence["all_classes"]``: all-to-all poison names
    no class) or whose samples carry their own evidence (``evidence["stands_alone"]``: a stamp they share,
    labels against their content) keeps its samples whatever the class votes say.
    """
    flagged = [r for r in results if r.flagged]
    sample_votes = Counter(i for r in flagged for i in r.suspicious_indices)
    suspicious = sorted(i for i, v in sample_votes.items() if v >= policy.min_votes)
    if labels is None or not votes:
        return suspicious
    tops = Counter(int(r.evidence["ranking"][0]) for r in results if r.evidence.get("ranking"))
    need = min(policy.class_support, sum(tops.values()))
    top = max(votes.values())
    keep = {c for c, v in votes.items() if v >= policy.class_vote_share * top and (need == 0 or tops[c] >= need)}
    confidence = {c: 1.0 - math.prod(1.0 - probs[r.key] for r in flagged if c in r.target_classes) for c in keep}
    every_class = {i for r in flagged if r.evidence.get("all_classes") or r.evidence.get("stands_alone")
                   for i in r.suspicious_indices}
    if max(confidence.values(), default=0.0) < policy.quarantine_confidence:
        return sorted(every_class)
    naming = Counter(c for r in flagged for c in set(r.target_classes))
    # Split opinions of detectors that did not name the class (``evidence["suspect_sides"]``) join its vote.
    for r in results:
        sides = r.evidence.get("suspect_sides") or {}
        for c in keep - set(r.target_classes if r.flagged else []):
            if str(c) in sides:
                naming[c] += 1
                sample_votes.update(sides[str(c)])
    need_votes = {c: max(policy.min_votes, policy.sample_agreement * naming[c]) for c in keep}
    return sorted(every_class | {i for i, v in sample_votes.items()
                                 if int(labels[i]) in keep and v >= need_votes[int(labels[i])]})
