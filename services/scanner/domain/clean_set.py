"""How far to trust a model-level verdict made with few clean inputs per class, or clean inputs that span few
input directions. Pure.

Neural Cleanse's index and the per-class agreement read the clean inputs: the search fits each class's
trigger to them, persistence and trigger likeness are measured on them (and the dormant-feature check takes
its dormant features and carriers from them). Their thresholds were set on
clean sets of about 30 inputs per class (``benchmarks/validate_detection.py``). With fewer inputs the
reversed triggers fit the few inputs at hand, a naturally easy class stands out more, and the scores of
clean models rise. Measured on 41 clean and 21 backdoored MLPs of three digit zoos (seed 0):

=================  ==============  ==========================  ============
inputs per class   shipped bars    bars x 1.5                  bars x 1.75
=================  ==============  ==========================  ============
3                  FPR 11/41       FPR 3/41, TPR 15/21         1/41, 13/21
10                 FPR 8/41        FPR 3/41, TPR 16/21         0/41, 13/21
30-40              FPR 2/41        (not raised)
=================  ==============  ==========================  ============

So below ``CALIBRATED_PER_CLASS`` inputs per class (the median over the classes present) the bars of
the detectors that read clean inputs are raised, linearly up to x ``1 + MAX_RAISE`` at
``FEW_PER_CLASS`` or fewer, and the verdict says so. MM-BD only takes the input range from the data
and keeps its bar. Mixing same-class inputs to make more (mixup, kept when the model agrees on the
class) was tried and raised false alarms further (10 per class: 10/41).

Clean data that spans few input directions. Small images drawn larger (each pixel repeated, or resized by
any linear interpolation, as 8 x 8 digits are made into 28 x 28 ones) vary along only as many directions
as the small image has pixels. A model never sees its inputs move along the others, so its weights there
keep their random start (a dense layer's especially) and natural triggers along them are cheap. The *span
ratio* is the numerical rank of the clean inputs' active features over the most that many inputs could span
(``min(N - 1, active features)``): 1.0 for the 8 x 8 digits and for colour images with pixel noise, 0.88 for
28 x 28 digits drawn with a random shift each, 0.25 for the zoo CNNs' 16 x 16 input (the bars were set on
it), 0.19 for digits drawn 28 x 28 or 32 x 32 (smoothed, unshifted; 300 inputs of them cannot show less than
about 0.18). Below ``SPAN_CALIBRATED`` the same bars as above (Neural Cleanse, the dormant-feature check, and
the checks read off them) are raised, linearly up to x ``1 + SPAN_RAISE`` at ``SPAN_LOW``, and the verdict
says so. Measured with ``benchmarks/unseen_recipes.py`` (``lin28-…``, ``lin32-…``), on 94 clean models of
those drawings (MLPs and CNNs): the shipped bars flagged 7 of the first 36 (19%); raised x 1.15 (the first
setting), 5 of 62; raised x 1.21, as shipped, 4 of 94, and 0 of 20 and 1 of 12 of the fresh seeds that
setting was checked on. Corner patches planted on the 28 x 28 drawing are still caught, 12 of 12.
"""

from __future__ import annotations

import numpy as np

from services.scanner.domain.stats import Arr, activity

CALIBRATED_PER_CLASS = 20
FEW_PER_CLASS = 10
MAX_RAISE = 0.5
KEPT_PER_CLASS = 30  # clean inputs per class a scan keeps at least (a 10-class scan's 300)
SPAN_CALIBRATED = 0.25  # span ratio of the zoo CNNs' 16 x 16 input, where the bars were set
SPAN_LOW = 0.18  # about the least 300 inputs of 8 x 8 digits drawn larger can show (53 directions of 299)
SPAN_RAISE = 0.25
SPAN_FEATURES = 4096  # active features the rank is measured on (a fixed random subset of more)
SPAN_INPUTS = 1000  # ... on at most this many inputs (a many-class scan keeps 30 per class)
RANK_TOLERANCE = 1e-3  # singular values below this share of the largest do not count


def clean_sample_cap(max_samples: int, num_classes: int) -> int:
    """How many clean inputs a scan keeps: ``max_samples`` (300: 30 per class of a 10-class model), or
    ``KEPT_PER_CLASS`` per class on a many-class model, so that a clean set of 30 inputs per class is not
    cut to a few per class (which would raise the bars and weaken the scan for nothing)."""
    return max(max_samples, KEPT_PER_CLASS * num_classes)


def inputs_per_class(y: Arr) -> float:
    """Median number of clean inputs over the classes present in ``y``."""
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    counts = counts[counts > 0]
    return float(np.median(counts)) if len(counts) else 0.0


def threshold_factor(y: Arr) -> float:
    """What the bars of clean-data detectors are multiplied by for a clean set with labels ``y``."""
    return _ramp(inputs_per_class(y), CALIBRATED_PER_CLASS, FEW_PER_CLASS, MAX_RAISE)


def _ramp(value: float, calibrated: float, low: float, most: float) -> float:
    """1 at ``calibrated`` and above, rising linearly to ``1 + most`` at ``low`` and below."""
    short = (calibrated - value) / (calibrated - low)
    return 1.0 + most * min(max(short, 0.0), 1.0)


def few_inputs_note(y: Arr) -> str | None:
    """A line for the report when the clean set is small enough to raise the bars, else ``None``."""
    factor = threshold_factor(y)
    if factor <= 1.0:
        return None
    return (f"only {inputs_per_class(y):g} clean inputs per class (median); the bars of the detectors that read "
            f"them were raised x{factor:.2f}, as false alarms rise with few inputs: give at least "
            f"{CALIBRATED_PER_CLASS} per class for the calibrated verdict")


def missing_classes_note(y: Arr, num_classes: int) -> str | None:
    """A line for the report when the clean set holds no input of some of the model's classes, else ``None``.

    The scan still runs: each class's trigger is reversed from the other classes' inputs, and MM-BD needs
    none. What cannot be measured for an absent class is how its trigger compares with its own inputs
    (trigger likeness), so the agreement has one signal fewer there."""
    present = set(np.unique(np.asarray(y, dtype=np.int64)).tolist())
    missing = [c for c in range(num_classes) if c not in present]
    if not missing:
        return None
    shown = ", ".join(map(str, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
    return (f"the clean data holds no input of {len(missing)} of the model's {num_classes} classes ({shown}): their "
            f"triggers are reversed from the other classes' inputs, but not compared with inputs of their own; "
            f"give clean inputs of every class for the full verdict")


def span_ratio(x: Arr) -> float:
    """How many input directions the clean inputs ``x`` [N, ...] span, over the most N inputs could span over
    their active features (those that move off their resting value on more than 1% of the inputs). 1.0 when
    there is too little data to tell."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    rng = np.random.default_rng(0)
    if len(flat) > SPAN_INPUTS:
        flat = flat[np.sort(rng.choice(len(flat), SPAN_INPUTS, replace=False))]
    active = np.flatnonzero(activity(flat) > 0.01) if len(flat) >= 3 else np.zeros(0, dtype=np.int64)
    if active.size < 2:
        return 1.0
    if active.size > SPAN_FEATURES:
        active = np.sort(rng.choice(active, SPAN_FEATURES, replace=False))
    part = flat[:, active].astype(np.float64)
    values = np.linalg.svd(part - part.mean(axis=0), compute_uv=False)
    if not values[0] > 0:
        return 1.0
    rank = int((values > RANK_TOLERANCE * values[0]).sum())
    return min(1.0, rank / min(len(flat) - 1, active.size))


def span_factor(ratio: float) -> float:
    """What the bars of clean-data detectors are multiplied by for clean data of span ratio ``ratio``."""
    return _ramp(ratio, SPAN_CALIBRATED, SPAN_LOW, SPAN_RAISE)


def low_span_note(ratio: float) -> str | None:
    """A line for the report when the clean data spans few enough directions to raise the bars, else ``None``."""
    factor = span_factor(ratio)
    if factor <= 1.0:
        return None
    return (f"the clean inputs span only {ratio:.0%} of the input directions they could (small images drawn "
            f"larger look like this): a model's natural triggers along the directions its data never moves are "
            f"cheap, so the bars of the detectors that read clean inputs were raised x{factor:.2f}; real, "
            f"varied inputs give the calibrated verdict")
