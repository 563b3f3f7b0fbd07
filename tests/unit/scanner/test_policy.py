"""The combined verdict policy."""

from __future__ import annotations

import pytest

from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.policy import VerdictPolicy, combine

pytestmark = pytest.mark.unit


def _r(key: str, score: float, threshold: float, targets: list[int]) -> DetectionResult:
    flagged = score > threshold
    return DetectionResult(key, score, threshold, "suspicious" if flagged else "clean",
                           targets if flagged else [], {}, [], 0.1)


def test_no_flagging_detector_means_no_backdoor_and_confidence_below_one_half() -> None:
    v = combine([_r("a", 1.0, 2.0, [1]), _r("b", 0.5, 3.0, [2])])
    assert not v.backdoor_detected and v.target_classes == [] and v.confidence < 0.5 and not v.block_deployment


def test_agreeing_detectors_raise_confidence_above_either_alone() -> None:
    one = combine([_r("a", 3.0, 2.0, [4]), _r("b", 1.0, 3.0, [4])])
    both = combine([_r("a", 3.0, 2.0, [4]), _r("b", 4.0, 3.0, [4])])
    assert one.backdoor_detected and both.backdoor_detected
    assert 0.5 < one.confidence < both.confidence <= 1.0 and both.target_classes == [4]


def test_a_far_exceeded_threshold_blocks_deployment() -> None:
    v = combine([_r("a", 20.0, 2.0, [7, 1])])
    assert v.block_deployment and v.target_classes == [7, 1]


def test_requiring_two_flags_ignores_a_lone_detector() -> None:
    v = combine([_r("a", 20.0, 2.0, [7]), _r("b", 1.0, 2.0, [])], VerdictPolicy(min_flags=2))
    assert not v.backdoor_detected and v.target_classes == []


def test_invalid_policy_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_flags=0"):
        VerdictPolicy(min_flags=0)


def test_verdict_serialises_with_per_detector_results_and_timings() -> None:
    d = combine([_r("a", 3.0, 2.0, [4])]).to_dict()
    assert d["detectors"][0]["key"] == "a" and d["timings"] == {"a": 0.1}
    assert set(d) >= {"backdoor_detected", "confidence", "target_classes", "suspicious_indices"}


def _d(key: str, score: float, targets: list[int], indices: list[int]) -> DetectionResult:
    return DetectionResult(key, score, 3.0, "suspicious", targets, {}, indices, 0.1)


def test_with_labels_samples_are_kept_only_in_the_classes_the_detectors_agree_on() -> None:
    labels = [7, 7, 7, 9, 9, 1]
    results = [_d("a", 9.0, [7], [0, 1]), _d("b", 6.0, [7], [1, 2]), _d("c", 3.2, [9], [3, 4])]
    assert combine(results).suspicious_indices == [0, 1, 2, 3, 4]
    assert combine(results, labels=labels).suspicious_indices == [0, 1, 2]
    assert combine(results, VerdictPolicy(class_vote_share=0.0), labels).suspicious_indices == [0, 1, 2, 3, 4]
