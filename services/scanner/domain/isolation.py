"""An isolated trigger: one class's reversed trigger far smaller than every other class's. Pure.

Neural Cleanse's index measures how far a class's mask size lies from the *median* class, in units of
the classes' spread. Where natural triggers are all small and spread widely (vision transformers: on the
``vit`` zoo clean masks of 1.4 to 11 pixels of 256) a planted trigger stays inside that spread, although
it is still the smallest mask by a wide margin. Natural small triggers come in company: classes that are
easy to reach from everywhere are usually several (two digits that share strokes), so the smallest mask
has a runner-up close by. The isolation index is log(second-smallest mask size / smallest), read off
Neural Cleanse's ``l1_norms``; it names the smallest class as the target.

Threshold 0.6. Measured on the 98 clean models of six zoos (digit MLPs and CNNs of four recipes, strided
CNNs, residual nets, vision transformers): largest 0.49, so none is flagged. Backdoored models whose
target has the smallest mask: 48 of 76 above it on those zoos, but on the digit zoos every one of them is
already caught by the per-class detectors; what it adds is on the architectures where those are weak:
2 more of 6 transformers. Only for five classes or more (with fewer, the runner-up is too often a lone
neighbour).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.detectors.neural_cleanse import MASK_FLOOR

KEY = "isolated_trigger.v1"
SOURCE = "neural_cleanse.v2"
DEFAULT_THRESHOLD = 0.6  # log ratio; 98 clean models: largest 0.49 (see the module docstring)
MIN_CLASSES = 5


def isolation_index(l1: Sequence[float]) -> tuple[float, int]:
    """log(second-smallest / smallest mask size) and the class with the smallest mask."""
    sizes = np.maximum(np.asarray(l1, dtype=float), MASK_FLOOR)
    order = np.argsort(sizes, kind="stable")
    return float(np.log(sizes[order[1]] / sizes[order[0]])), int(order[0])


def isolated_trigger(results: Sequence[DetectionResult], threshold: float = DEFAULT_THRESHOLD
                     ) -> DetectionResult | None:
    """The isolation check read off Neural Cleanse's result, or ``None`` when it did not run or the model
    has fewer than ``MIN_CLASSES`` classes."""
    source = next((r for r in results if r.key == SOURCE and r.evidence.get("l1_norms") is not None), None)
    if source is None or len(source.evidence["l1_norms"]) < MIN_CLASSES:
        return None
    score, smallest = isolation_index(source.evidence["l1_norms"])
    flagged = score > threshold
    triggers = {smallest: source.triggers[smallest]} if flagged and smallest in source.triggers else {}
    return DetectionResult(
        KEY, round(score, 6), threshold, "suspicious" if flagged else "clean", [smallest] if flagged else [],
        {"smallest_class": smallest, "isolation_index": round(score, 3), "ranking": [smallest]}, [], 0.0, triggers)
