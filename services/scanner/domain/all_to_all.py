"""All-to-all backdoors: one trigger that takes every class somewhere else (c to c + 1, say). Pure.

Per-class trigger search (Neural Cleanse) and per-class margins (MM-BD) look for one target class that is
unusually easy to reach; an all-to-all backdoor has none: to send *every* input to class t, its trigger
only helps the inputs of class t - 1. What it has is a small trigger that moves inputs of every class
off their own class. Neural Cleanse therefore also searches one *untargeted* universal trigger
(:func:`..detectors.reversal.reverse_untargeted`), at a tenth of its cost on ten classes, and publishes
``evidence["all_to_all_index"]``: log(median per-class mask size / untargeted mask size).

On a clean model the untargeted trigger is the larger one: "its own class" is the class the model gives
an input, and the share of inputs to move is what a push towards any one class can at best reach (all but
that class's own inputs), so a trigger that merely pushes everything to the easiest class falls short and
the index is below 0, whatever the number of classes. An all-to-all trigger moves all classes at once and
is smaller than what any single target needs, so the index is above 0. The universal search gets the
per-class search's steps and batch, so a costly model's per-class masks, cut short by the work budget, are
not compared with a fully searched universal one (on the residual nets that comparison put a clean model
at 0.78).

Threshold 0.5. Measured on the 92 clean models of five digit zoos and the residual nets: median -0.61,
largest 0.28 (strided CNNs with global average pooling sit highest, -0.30 to 0.28), so no clean model is
flagged and the verdict's false alarms do not grow. On the ``alltoall`` zoo (15 all-to-all backdoors with
attack success >= 0.5, six trigger kinds, four architectures) it catches 9: every MLP whose trigger is not a
one-pixel frame (sig, patch, blend, dispersed, warp: 1.00-2.54) and two of five digit CNNs (dispersed,
blend: 0.77, 0.80); frames (0.04-0.28), a CNN sig (0.37) and the warps of the CNNs stay under it.
Neural Cleanse alone catches one of them, MM-BD none, their per-class agreement four; with this check the
verdict catches 10 of 15 (``python -m benchmarks.validate_detection --zoo benchmarks/zoo/alltoall``).
Some all-to-one backdoors reach the index too (a strong trigger moves the target's own inputs elsewhere as
well), which only adds to a verdict the per-class detectors already give.

The result names no target class (every class may be one) and carries the universal trigger for the report.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.scanner.domain.detectors.base import UNIVERSAL, DetectionResult

KEY = "all_to_all.v1"
SOURCE = "neural_cleanse.v2"
DEFAULT_THRESHOLD = 0.5  # log ratio; 92 clean models: largest 0.28 (see the module docstring)


def all_to_all(results: Sequence[DetectionResult], threshold: float = DEFAULT_THRESHOLD) -> DetectionResult | None:
    """The all-to-all check read off Neural Cleanse's result, or ``None`` when it published no index
    (two classes, the search turned off, or Neural Cleanse not run)."""
    source = next((r for r in results if r.key == SOURCE and r.evidence.get("all_to_all_index") is not None), None)
    if source is None:
        return None
    score = float(source.evidence["all_to_all_index"])
    flagged = score > threshold
    universal = {UNIVERSAL: source.triggers[UNIVERSAL]} if flagged and UNIVERSAL in source.triggers else {}
    note = ("one small universal trigger moves inputs of every class off their own class, smaller than the "
            "trigger any single target class needs: a trigger that works from every class (an all-to-all "
            "backdoor when no single target class stands out)") if flagged else None
    return DetectionResult(
        KEY, round(score, 6), threshold, "suspicious" if flagged else "clean", [],
        {"untargeted_l1": source.evidence.get("untargeted_l1"), "all_to_all_index": round(score, 3),
         **({"note": note} if note else {})}, [], 0.0, universal)
