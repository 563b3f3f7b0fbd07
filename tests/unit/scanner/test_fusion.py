"""Per-class agreement of model-level detectors."""

from __future__ import annotations

import math

import pytest

from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.fusion import DEFAULT_THRESHOLD, TWO_CLASS_FACTOR, agreement

pytestmark = pytest.mark.unit


def _r(key: str, scores: list[float], baseline: list[float] | None = None) -> DetectionResult:
    evidence = {"class_scores": scores, **({"baseline_class_scores": baseline} if baseline else {})}
    return DetectionResult(key, max(scores), 3.5, "clean", [], evidence, [], 0.1)


def _peak(k: int, c: int, value: float) -> list[float]:
    return [value if i == c else 0.0 for i in range(k)]


def test_two_detectors_below_their_own_bar_but_on_the_same_class_flag_it() -> None:
    joined = agreement([_r("nc", _peak(10, 4, 2.5)), _r("mm", _peak(10, 4, 2.5))])
    assert joined is not None and joined.flagged and joined.target_classes == [4]
    assert joined.score == pytest.approx(5.0 / math.sqrt(2))


def test_the_same_evidence_on_different_classes_does_not() -> None:
    joined = agreement([_r("nc", _peak(10, 4, 2.5)), _r("mm", _peak(10, 7, 2.5))])
    assert joined is not None and not joined.flagged and joined.target_classes == []
    assert joined.evidence["ranking"][:2] == [4, 7]


def test_a_two_class_model_is_judged_on_the_lower_two_class_bar() -> None:
    # a two-class index is antisymmetric: one statistic, not the largest of ten, so the same joined value
    # that stays under the many-class bar is over the two-class one (and the result says which bar it used)
    value = (DEFAULT_THRESHOLD + DEFAULT_THRESHOLD * TWO_CLASS_FACTOR) / 2 * math.sqrt(2) / 2
    two = agreement([_r("nc", [value, -value]), _r("mm", [value, -value])])
    many = agreement([_r("nc", _peak(10, 0, value)), _r("mm", _peak(10, 0, value))])
    assert two is not None and many is not None
    assert two.score == pytest.approx(many.score)
    assert two.flagged and two.target_classes == [0]
    assert two.threshold == pytest.approx(DEFAULT_THRESHOLD * TWO_CLASS_FACTOR)
    assert not many.flagged and many.threshold == DEFAULT_THRESHOLD
    below = agreement([_r("nc", [-value, value]), _r("mm", [value, -value])])  # disagreeing: nothing to flag
    assert below is not None and not below.flagged


def test_a_detectors_baseline_signal_counts_as_correlated_with_its_own_index() -> None:
    nc = _r("nc", _peak(10, 4, 2.5), baseline=_peak(10, 4, 2.5))
    alone = agreement([nc])
    assert alone is not None and alone.score == pytest.approx(2.5) and not alone.flagged  # mean, not sum/sqrt(2)
    stronger = _r("nc", _peak(10, 4, 2.5), baseline=_peak(10, 4, 3.5))
    joined = agreement([stronger, _r("mm", _peak(10, 4, 2.0))])
    assert joined is not None and joined.score == pytest.approx(8.0 / math.sqrt(5)) and joined.flagged
    assert joined.evidence["signals"] == ["nc/class_scores", "nc/baseline_class_scores", "mm/class_scores"]


def test_no_agreement_without_two_signals_over_the_same_classes() -> None:
    assert agreement([_r("nc", _peak(10, 4, 9.0))]) is None
    assert agreement([_r("nc", _peak(10, 4, 9.0)), _r("mm", _peak(3, 1, 9.0))]) is None
    no_scores = DetectionResult("x", 1.0, 3.0, "clean", [], {}, [], 0.1)
    assert agreement([_r("nc", _peak(10, 4, 9.0)), no_scores]) is None


def test_a_baseline_on_which_the_target_was_already_easy_does_not_dilute_the_agreement() -> None:
    nc = _r("nc", _peak(10, 4, 3.0), baseline=_peak(10, 4, -2.0))  # class 4 was small in the earlier version too
    joined = agreement([nc, _r("mm", _peak(10, 4, 2.0))])
    assert joined is not None and joined.score == pytest.approx(5.0 / math.sqrt(2)) and joined.target_classes == [4]


def _with_foreign(result: DetectionResult, foreign: list[float]) -> DetectionResult:
    return DetectionResult(result.key, result.score, result.threshold, result.verdict, result.target_classes,
                           {**result.evidence, "foreign_class_scores": foreign}, [], 0.1)


def test_a_foreign_trigger_supports_two_detectors_that_agree_below_the_bar() -> None:
    nc, mm = _r("nc", _peak(10, 3, 2.0)), _r("mm", _peak(10, 3, 2.0))
    plain = agreement([nc, mm])
    assert plain is not None and not plain.flagged  # 4 / sqrt(2) = 2.83
    joined = agreement([_with_foreign(nc, _peak(10, 3, 2.5)), mm])
    assert joined is not None and joined.flagged and joined.target_classes == [3]
    assert joined.score == pytest.approx(6.5 / math.sqrt(3 + 2 * 0.4))  # its own source, 0.4 correlated with nc's
    assert joined.evidence["signals"] == ["nc/class_scores", "nc/foreign_class_scores", "mm/class_scores"]


def test_a_foreign_trigger_never_makes_an_agreement_with_its_own_detector() -> None:
    assert agreement([_with_foreign(_r("nc", _peak(10, 3, 3.0)), _peak(10, 3, 4.0))]) is None


def test_a_trigger_that_looks_like_its_class_does_not_dilute_the_agreement() -> None:
    nc, mm = _r("nc", _peak(10, 3, 3.0)), _r("mm", _peak(10, 3, 3.0))
    joined = agreement([_with_foreign(nc, _peak(10, 3, -2.0)), mm])
    assert joined is not None and joined.score == pytest.approx(6.0 / math.sqrt(2)) and joined.flagged


def test_supporting_signals_join_one_at_a_time() -> None:
    nc = _r("nc", _peak(10, 3, 1.5), baseline=_peak(10, 3, 2.5))
    joined = agreement([_with_foreign(nc, _peak(10, 3, 2.5)), _r("mm", _peak(10, 3, 1.5))])
    # own + baseline: 5.5 / sqrt(2^2 + 1) = 2.46; own + foreign: 5.5 / sqrt(3 + 2 * 0.4) = 2.82;
    # all three at once would give 8 / sqrt(2^2 + 1 + 1 + 4 * 0.4) = 2.90
    assert joined is not None and joined.score == pytest.approx(5.5 / math.sqrt(3.8))


def test_one_strong_detector_with_the_other_at_its_null_is_not_an_agreement() -> None:
    # Neural Cleanse at 5 on class 1 (a natural trigger of three rare pixels) with MM-BD at 0.6 there: the sum
    # passes the bar, but only one signal points at the class; the index is capped at the bar and says why
    alone = agreement([_r("nc", _peak(10, 1, 5.0)), _r("mm", _peak(10, 1, 0.6))])
    assert alone is not None and not alone.flagged and alone.score == pytest.approx(DEFAULT_THRESHOLD)
    assert alone.evidence["disagreeing_classes"] == [1]
    both = agreement([_r("nc", _peak(10, 1, 4.0)), _r("mm", _peak(10, 1, 1.0))])
    assert both is not None and both.flagged and both.target_classes == [1]
    # a clean earlier version's signal is a second one that can agree
    ledger = agreement([_r("nc", _peak(10, 1, 5.0), baseline=_peak(10, 1, 3.0)), _r("mm", _peak(10, 1, 0.6))])
    assert ledger is not None and ledger.flagged and ledger.evidence["disagreeing_classes"] == []
    # two classes keep the plain sum (one statistic per detector)
    two = agreement([_r("nc", [4.0, -4.0]), _r("mm", [0.2, -0.2])])
    assert two is not None and two.flagged
