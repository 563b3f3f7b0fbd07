"""What one remediation produced: pruned units, accuracy and ASR before/after, timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PrunedLayer:
    """Units removed from one layer: ``tensor`` is the activation that was measured."""

    tensor: str
    kind: str  # "conv" (channels) or "dense" (neurons)
    units: int
    indices: list[int]
    order: str  # "dormant" (clean activation) or "trigger_gain"


@dataclass(frozen=True)
class RemediationReport:
    """Pure data for the CLI, the ledger and the event bus; ``to_dict`` is JSON-able."""

    model: str
    parent_sha256: str
    output: str
    output_sha256: str
    pruned: PrunedLayer
    clean_accuracy_before: float
    clean_accuracy_after: float
    asr_before: float | None
    asr_after: float | None
    target: int | None
    trigger_source: str | None  # "given" (guided pruning + unlearning) or None (blind Fine-Pruning)
    unlearning: bool
    n_tune: int
    n_holdout: int
    max_accuracy_drop: float
    max_asr: float
    seed: int
    all_to_all: bool = False  # the trigger moves every class, to no one target: ASR is the share moved off
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the RemediationConfig used, for reproduction

    @property
    def accuracy_drop(self) -> float:
        return self.clean_accuracy_before - self.clean_accuracy_after

    @property
    def meets_bar(self) -> bool:
        """Accuracy within budget and ASR measured and below the bar.

        Without a trigger the ASR is unknown and the bar is not met: blind Fine-Pruning often leaves
        the backdoor in place (see :mod:`fine_pruning`), so it must not be certified.
        """
        asr_ok = self.asr_after is not None and self.asr_after < self.max_asr
        return self.accuracy_drop < self.max_accuracy_drop + 1e-9 and asr_ok

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(accuracy_drop=round(self.accuracy_drop, 6), meets_bar=self.meets_bar,
                 asr_checked=self.asr_after is not None)
        return d
