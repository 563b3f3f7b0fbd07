"""Per-class agreement of model-level detectors (Stouffer's method). Pure.

Each model-level detector scores every class with a robust z-like index (Neural Cleanse: small and
persistent reversed trigger; MM-BD: large maximum margin). Taken alone, a detector's maximum over K
classes needs a high bar: it is the largest of K noisy values. Two detectors that point at the *same*
class are far stronger evidence than either one's maximum, and on a clean model their outliers fall
on unrelated classes (a class that is naturally easy to reach by a small mask does not, by that,
reach a large logit margin). The agreement index of class c is the sum of the signals' indices for c
divided by the standard deviation of that sum under the null: signals of different detectors are
taken as independent, signals of one detector (Neural Cleanse's own index and its index against a
clean earlier version, both read off the same reversed triggers) as fully correlated. So it stays on
the scale of its inputs (standard normal for standard-normal nulls) and shares their kind of threshold.

Detectors publish their per-class indices as ``evidence["class_scores"]`` and, when they have a
clean earlier version to compare with, ``evidence["baseline_class_scores"]``. Neural Cleanse also
publishes ``evidence["foreign_class_scores"]``: how unlike its class's own inputs each reversed trigger
looks (:mod:`.detectors.likeness`). That one is read off the same triggers but measures something else
(a pattern's look, not its size), so it counts as a source of its own, with the null correlation
measured between it and Neural Cleanse's own index (``SEPARATE_CORRELATION``: 0.38-0.42 per class over
the clean models of three digit zoos; class 1 is both naturally small and unlike its class there). In
general the index divides the sum by the square root of the sum of all pairwise null correlations.
Results without per-class signals, or whose class count differs, are left out.

The dormant-feature detector (:mod:`.detectors.dormant_features`) publishes its per-class index as
``evidence["dormant_class_scores"]``, deliberately not a signal of the agreement. Joined as an independent
supporting signal it caught one more backdoor on the pooled digit zoos and two more two-class ones, with
no more false alarms there; but on clean MLPs of 28 x 28 digits (upsampled, with a blank border, as MNIST
has) its index rose on the very class that is naturally easy to reach (the push of a blank pixel runs
through the same trained layers as a natural trigger), and it took 2 of 6 over the bar. It is not
independent of Neural Cleanse under the null, so it flags on its own bar only.

Baseline and foreign signals are *supporting* evidence: each class keeps the largest index over the
detectors' own signals alone or joined with one supporting signal, so a target whose class was already
easy in the earlier version, or whose trigger happens to look like its class, is not diluted by them.
One at a time: on the holdout zoo (with the foreign signal then taken as independent), joining both as
well raised the false alarms over model x earlier-version pairs from 0.15 to 0.18 and caught no more
backdoors.

Agreement means two signals point at the class. With many classes, a class whose joined index passes the bar
while fewer than two of the signals that can agree (the detectors' own indices, a clean earlier version's) reach
``MIN_SIGNAL`` (1.0) there is capped at the bar and listed in
``evidence["disagreeing_classes"]``: Neural Cleanse at 5 with MM-BD at its null sums to 3.5 over the square root
of two, which is one detector's evidence, judged on that detector's own bar (4.3). Measured: no catch of the five
digit zoos or the all-to-all zoo has a detector under 1.0 on its target; clean ``MLPClassifier()`` models
(``benchmarks/zoo/sklearn_zoo.py --flavor sklearn-default``, Adam on digits in [0, 1]) reach class 1 with three
rare edge pixels, Neural Cleanse 3.4-3.8 with MM-BD 0.6-0.7 there, and 3 of their 4 false alarms (of 12) were
such classes. It costs one vision-transformer catch (MM-BD 0.91 on its target). Two-class models keep the plain
sum (their bar was set with it, and they have one statistic per detector, not a largest of many).

Two classes: every two-class index is antisymmetric (class 0's is minus class 1's), so the agreement's
largest class score is the absolute value of one statistic, where with K classes it is the largest of K
noisy ones. The many-class bar therefore holds a two-class model to a far lower false-alarm rate (3.3 is
passed by 0.5% of the per-class values of 84 clean ten-class models, so by 4 of the 84 models; by none of
the 64 per-class values of 32 clean two-class models, whose RMS is 1.03), and it caught 15 of their 32
backdoored twins. The two-class bar is ``TWO_CLASS_FACTOR`` x 3.3 = 2.64, chosen on those two zoos (clean:
largest 2.86, next 2.06; 22 of 32 backdoors caught) and checked on three fresh ones: of 48 clean models
none is over it but one that Neural Cleanse flags on its own anyway, and 28 of 48 backdoors are caught
(22 at 3.3); on two-class recipes outside every zoo, 15 of 18 caught and 0 of 12 clean flagged.

Threshold: 3.3, with Neural Cleanse alone at 4.3 and MM-BD alone at 4.0, keeps the false alarms of the
shipped verdict at 4 of 84 clean models (4.8%) over five digit zoos of different training recipes,
catching 55 of 60 all-to-one backdoors. It was 3.2 while the search of the costlier digit CNNs was cut
short by the work budget (272 of 600 steps on the strided CNN); with the full search (the budget rose
four-fold when convolutions moved to onnxruntime) some clean classes' natural triggers come out
smaller, and 3.2 gave 6 of 84 (56 of 60 caught). The first setting (3.0 / 3.5), chosen on the main zoo
alone, had no false alarm there but 7 of 84 over all five, 5 of 32 on a zoo of fresh clean models
alone: recipes the thresholds were not chosen on raise clean scores, so thresholds are set on the
pooled population (``benchmarks/validate_detection.py``, whose leave-one-zoo-out table says what that
choice is worth out of sample).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.model import FloatArray

KEY = "agreement.v1"
DEFAULT_THRESHOLD = 3.3  # pooled clean population of five digit zoos (84 models): see the module docstring
TWO_CLASS_FACTOR = 0.8  # two classes: one statistic, not the largest of K (see the module docstring)
SUPPORTING = ("baseline_class_scores", "foreign_class_scores")
SIGNALS = ("class_scores", *SUPPORTING)
SEPARATE_SOURCES = ("foreign_class_scores",)
SEPARATE_CORRELATION = 0.4  # per-class, NC's own index vs its foreign signal, clean zoo models: 0.38-0.42
MIN_SIGNAL = 1.0  # many classes: two signals must reach it on a flagged class (see the module docstring)
Signal = tuple[str, str, list[float]]  # (detector key, evidence name, per-class index)


def bar(threshold: float, num_classes: int) -> float:
    """The agreement's bar for a model of ``num_classes`` classes: ``threshold`` (the many-class bar) times
    ``TWO_CLASS_FACTOR`` for two classes."""
    return threshold * TWO_CLASS_FACTOR if num_classes == 2 else threshold


def signals(results: Sequence[DetectionResult]) -> list[Signal]:
    """(detector key, signal name, per-class index) for every per-class signal the results publish."""
    return [(r.key, name, [float(v) for v in r.evidence[name]]) for r in results for name in SIGNALS
            if r.evidence.get(name) is not None]


def _correlation(a: Signal, b: Signal) -> float:
    """Null correlation of two signals: 1 within a source, ``SEPARATE_CORRELATION`` between a
    detector's separate source and its other signals, 0 between detectors."""
    if _source(a) == _source(b):
        return 1.0
    return SEPARATE_CORRELATION if a[0] == b[0] else 0.0


def _source(row: Signal) -> str:
    key, name, _ = row
    return f"{key}/{name}" if name in SEPARATE_SOURCES else key


def _stouffer(rows: Sequence[Signal]) -> FloatArray:
    z = np.nan_to_num(np.asarray([s for _, _, s in rows], dtype=float), nan=0.0)
    variance = sum(_correlation(a, b) for a in rows for b in rows)
    joined: FloatArray = z.sum(axis=0) / np.sqrt(variance)
    return joined


def _agreeing(rows: Sequence[Signal]) -> int:
    """How many signals of ``rows`` can make an agreement: a foreign-trigger signal only supports one
    (it says how a trigger looks, not that the model needs it), it never makes one with its own detector."""
    return sum(1 for _, name, _ in rows if name not in SEPARATE_SOURCES)


def agreement(results: Sequence[DetectionResult], threshold: float = DEFAULT_THRESHOLD) -> DetectionResult | None:
    """The per-class agreement of ``results`` as one more result, or ``None`` when fewer than two
    per-class signals that can agree (detectors' own indices and baselines) over the same classes
    are published. Each class keeps its largest index over the detectors' own signals, alone or
    joined with one supporting signal. ``threshold`` is the many-class bar; a two-class model's is
    lower (:func:`bar`), and the result carries the bar it was judged on."""
    rows = signals(results)
    if len({len(s) for _, _, s in rows}) != 1:
        return None
    own = [r for r in rows if r[1] not in SUPPORTING]
    extra = [r for r in rows if r[1] in SUPPORTING]
    valid = [own + chosen for chosen in ([], *([r] for r in extra)) if _agreeing(own + chosen) >= 2]
    if not valid:
        return None
    stouffer = np.max([_stouffer(group) for group in valid], axis=0)
    threshold = bar(threshold, len(stouffer))
    apart = _apart([r for r in rows if r[1] not in SEPARATE_SOURCES], len(stouffer))
    joined = np.where(apart, np.minimum(stouffer, threshold), stouffer)
    ranking = [int(c) for c in np.argsort(-joined, kind="stable")]
    score = float(joined.max())
    flagged = score > threshold
    targets = [c for c in ranking if joined[c] > threshold] if flagged else []
    return DetectionResult(
        KEY, round(score, 6), threshold, "suspicious" if flagged else "clean", targets,
        {"class_scores": [round(float(v), 3) for v in joined], "ranking": ranking,
         "signals": [f"{k}/{name}" for k, name, _ in rows],
         "disagreeing_classes": [int(c) for c in np.flatnonzero(apart & (stouffer > threshold))]}, [], 0.0)


def _apart(agreeing: Sequence[Signal], num_classes: int) -> np.ndarray:
    """Per class: whether fewer than two of the signals that can agree (detectors' own indices, a clean earlier
    version's) reach ``MIN_SIGNAL`` there (many-class models only). The joined index of such a class is capped at
    the bar: one strong signal with the other at its null passes a sum over the square root of two at 4.7, and
    that is one signal's evidence, judged on its detector's own bar."""
    if num_classes < 3:
        return np.zeros(num_classes, dtype=bool)
    values = np.nan_to_num(np.asarray([s for _, _, s in agreeing], dtype=float), nan=0.0)
    return np.asarray((values >= MIN_SIGNAL).sum(axis=0) < 2)
