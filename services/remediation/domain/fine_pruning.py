"""Fine-Pruning: prune dormant units of the last feature layer, then fine-tune on clean data.

Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018. Backdoor behaviour tends to live in units that clean inputs leave dormant, so
units of the last convolutional (or penultimate dense) layer are removed in increasing order of
their mean clean activation until clean accuracy on the fine-tuning split falls by more than a
budget; fine-tuning on clean data then recovers accuracy and further erodes the backdoor.

When a trigger is available (the true one in benchmarks, a Neural Cleanse reversal in service) the
following documented refinements apply:

* pruning order by activation difference: units ranked by how much more the stamped inputs excite
  them than the clean ones (Neural Cleanse, Wang et al., IEEE S&P 2019, section VI-B "neuron
  pruning"), with the clean-dormancy order breaking ties;
* unlearning: stamped copies of fine-tuning inputs keep their true labels (Neural Cleanse section
  VI-C "unlearning"); added to the batch rather than swapped in, so clean rows are not lost;
* trigger refresh: before every epoch the trigger's pattern is re-optimised toward the target on
  the current weights and unlearned too (the inner maximisation of I-BAU, Zeng et al., ICLR 2022,
  reduced to a targeted, mask-constrained version).

Always, fine-tuning adds a distillation term toward the parent's softened outputs on clean rows
(Hinton et al. 2015; the same idea NAD, Li et al. ICLR 2021, applies to attention maps) so that a
few hundred clean samples do not drag clean accuracy down; stamped rows get the true label only.

Known limits: vanilla Fine-Pruning (no trigger) fails on blended triggers and on attacks whose
backdoor units are also active on clean data (BackdoorBench reports 57% residual ASR on BadNets and
99% on Blended for PreAct-ResNet18), and on the benchmark zoo it leaves ~80% ASR; adaptive
"pruning-aware" attacks defeat it by design. The trigger refinements are only as good as the
trigger: a minimal Neural Cleanse reversal covers part of a real patch and unlearning it leaves a
residual ASR (~10-20% on the zoo); a reversal of the wrong class protects nothing. Clean accuracy
is a small-sample estimate (a few hundred held-out inputs: +-1.5 points), and the defaults were
chosen on the benchmark zoo itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]


@dataclass(frozen=True)
class RemediationConfig:
    """Parameters of one remediation run (all keyword, validated).

    Args:
        max_accuracy_drop: The bar: held-out clean accuracy may fall by at most this much.
        max_asr: The bar: attack success rate after remediation must stay below this.
        prune_accuracy_drop: Budget for the pruning phase alone (fine-tuning recovers part of it).
        max_prune_fraction: Never prune more than this share of the layer's units.
        holdout_fraction: Share of the clean data kept out of pruning and fine-tuning for the final
            measurement.
        epochs: Fine-tuning epochs over the fine-tuning split.
        lr: Adam learning rate for fine-tuning.
        batch_size: Fine-tuning batch size.
        unlearn_fraction: Share of each batch stamped with the trigger (true labels kept), when a trigger is given.
        distill: Weight of distillation toward the parent's outputs on clean rows (0 = plain cross-entropy).
        temperature: Distillation temperature.
        refresh_steps: Per-epoch trigger re-optimisation steps (I-BAU-style); 0 keeps the given trigger only.
        mask_growth: During refresh the mask may move with its L1 norm up to ``1 + mask_growth`` times the
            given trigger's. Off by default: on the zoo a moving mask drifted onto class evidence and cost
            ~9 points of clean accuracy (ASR fell to ~0), so the mask stays as reversed.
        layer: ``"auto"`` (last Conv if any, else penultimate dense), ``"conv"``, ``"dense"`` or a tensor name.
        seed: Seeds the split and the fine-tuning order.
    """

    max_accuracy_drop: float = 0.02
    max_asr: float = 0.05
    prune_accuracy_drop: float = 0.05
    max_prune_fraction: float = 0.8
    holdout_fraction: float = 0.5
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 32
    unlearn_fraction: float = 0.5
    distill: float = 0.5
    temperature: float = 2.0
    refresh_steps: int = 10
    mask_growth: float = 0.0
    layer: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "max_asr", "prune_accuracy_drop", "max_prune_fraction",
                     "unlearn_fraction", "distill"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: need a value in [0, 1]")
        if not 0.05 <= self.holdout_fraction <= 0.95:
            raise ValueError(f"holdout_fraction={self.holdout_fraction!r}: need a value in [0.05, 0.95]")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature!r}: need a value > 0")
        if self.refresh_steps < 0 or self.mask_growth < 0:
            raise ValueError(f"refresh_steps={self.refresh_steps!r}, mask_growth={self.mask_growth!r}: need >= 0")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}: need "
                             "epochs >= 0, batch_size >= 1, lr > 0")


def split_indices(y: Arr, holdout_fraction: float, seed: int) -> tuple[Arr, Arr]:
    """Stratified split of ``y`` [N] into (tune, holdout) index arrays."""
    rng = np.random.default_rng(seed)
    tune, hold = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_hold = round(holdout_fraction * len(idx))
        hold.append(idx[:n_hold])
        tune.append(idx[n_hold:])
    t, h = np.sort(np.concatenate(tune)), np.sort(np.concatenate(hold))
    if len(t) == 0 or len(h) == 0:
        raise ValueError(f"{len(y)} clean samples are too few to split into fine-tuning and held-out parts")
    return t, h


def unit_order(clean_activation: Arr, trigger_activation: Arr | None = None) -> Arr:
    """Pruning order over units [U]: most suspicious first.

    Args:
        clean_activation: Mean absolute activation per unit on clean inputs [U].
        trigger_activation: The same on trigger-stamped inputs [U], or ``None``.

    Returns:
        Unit indices; by increasing clean activation (dormant first), or, with a trigger, by
        decreasing activation gain under the trigger (ties and non-responding units by dormancy).
    """
    if trigger_activation is None:
        return np.argsort(clean_activation, kind="stable")
    gain = trigger_activation - clean_activation
    return np.lexsort((clean_activation, -np.maximum(gain, 0.0)))


def progressive_prune(order: Arr, accuracy: Callable[[Arr], float], baseline: float, budget: float,
                      max_units: int) -> list[int]:
    """Prune units in ``order`` while ``accuracy(pruned)`` stays within ``budget`` of ``baseline``.

    Args:
        order: Units, first to prune first.
        accuracy: Clean accuracy with the given units [P] pruned.
        baseline: Accuracy with nothing pruned.
        budget: Largest tolerated drop.
        max_units: Cap on the number of pruned units.

    Returns:
        The pruned units, in pruning order; the unit whose removal broke the budget is not included.
    """
    pruned: list[int] = []
    for u in order[:max_units]:
        trial = np.asarray([*pruned, int(u)], dtype=np.int64)
        if baseline - accuracy(trial) > budget:
            break
        pruned.append(int(u))
    return pruned
