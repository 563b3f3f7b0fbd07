"""Data level, second round: joint_split.v1, trigger_response.v2 and the sample fusion of the verdict policy.

The detectors run on the session's planted-trigger models (conftest: a BadNets patch and a blended
trigger on 8x8 digits, and a clean model); the policy tests use hand-made results.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import REGISTRY, create
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.policy import VerdictPolicy, combine
from services.scanner.service_layer.scan import DEFAULT_DATA_DETECTORS, scan_training_data
from tests.unit.scanner.conftest import ATTACK, BLEND, Zoo

pytestmark = pytest.mark.unit


def _pr(found: set[int], truth: set[int]) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


def test_the_new_data_detectors_are_registered_and_run_by_default() -> None:
    assert REGISTRY["joint_split.v1"].level == "data" and REGISTRY["trigger_response.v2"].level == "data"
    assert {"joint_split.v1", "trigger_response.v2"} <= set(DEFAULT_DATA_DETECTORS)
    assert "trigger_response.v1" in REGISTRY  # the old version stays available by its key


@pytest.mark.parametrize(("key", "params"), [("joint_split.v1", {"k": 0}), ("joint_split.v1", {"alpha": 1.0}),
                                             ("joint_split.v1", {"min_class_size": 2}),
                                             ("trigger_response.v2", {"n_perturbations": 1}),
                                             ("trigger_response.v2", {"alpha": 0.0})])
def test_invalid_parameters_are_rejected(key: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        create(key, **params)


def test_joint_split_names_the_blended_target_and_quarantines_its_poison(zoo: Zoo) -> None:
    result = create("joint_split.v1").fit(open_model(zoo.blended_model), load_npz(zoo.blend_train_npz)).result()
    precision, recall = _pr(set(result.suspicious_indices), set(zoo.blend_idx.tolist()))
    assert result.flagged and result.target_classes == [BLEND.target]
    assert precision >= 0.9 and recall >= 0.9
    split = result.evidence["per_class"][str(BLEND.target)]
    assert split["foreign_contrast"] > 0 and split["strip_contrast"] > 0 and 0 < split["hot_share"] < 1
    assert result.evidence["ranking"][0] == BLEND.target


def test_joint_split_separates_the_patch_poison_even_where_its_class_score_stays_below_threshold(zoo: Zoo) -> None:
    # The 3x3 patch on an 8x8 digit makes poisoned inputs each other's neighbours (weak label cue), so
    # the class score is modest; the split of the class is still a good per-sample opinion.
    result = create("joint_split.v1").fit(open_model(zoo.backdoored_model), load_npz(zoo.train_npz)).result()
    assert result.evidence["ranking"][0] == ATTACK.target
    side = set(result.evidence["suspect_sides"][str(ATTACK.target)])
    precision, recall = _pr(side, set(zoo.poison_idx.tolist()))
    assert precision >= 0.9 and recall >= 0.85


@pytest.mark.parametrize("seed", [0, 1])
def test_joint_split_flags_no_class_of_clean_training_data(zoo: Zoo, seed: int) -> None:
    model, data = open_model(zoo.clean_model), load_npz(zoo.clean_train_npz)
    result = create("joint_split.v1", seed=seed).fit(model, data).result()
    assert not result.flagged and result.target_classes == [] and result.suspicious_indices == []


def test_trigger_response_v2_keeps_the_patch_poison_together_where_v1_halves_it(zoo: Zoo) -> None:
    model, data, truth = open_model(zoo.backdoored_model), load_npz(zoo.train_npz), set(zoo.poison_idx.tolist())
    v1 = create("trigger_response.v1").fit(model, data).result()
    v2 = create("trigger_response.v2").fit(model, data).result()
    assert v2.flagged and v2.target_classes == [ATTACK.target]
    precision, recall = _pr(set(v2.suspicious_indices), truth)
    assert precision >= 0.85 and recall >= 0.8
    assert recall >= _pr(set(v1.suspicious_indices), truth)[1] + 0.2


@pytest.mark.parametrize(("which", "min_recall"), [("patch", 0.75), ("blend", 0.9)])
def test_default_scan_data_quarantines_the_planted_poison(zoo: Zoo, which: str, min_recall: float) -> None:
    model, data, idx = ((zoo.backdoored_model, zoo.train_npz, zoo.poison_idx) if which == "patch"
                        else (zoo.blended_model, zoo.blend_train_npz, zoo.blend_idx))
    verdict = scan_training_data(open_model(model), load_npz(data))
    precision, recall = _pr(set(verdict.suspicious_indices), set(idx.tolist()))
    assert precision >= 0.9 and recall >= min_recall


def test_default_scan_data_quarantines_nothing_of_clean_training_data(zoo: Zoo) -> None:
    assert scan_training_data(open_model(zoo.clean_model), load_npz(zoo.clean_train_npz)).suspicious_indices == []


# --- the verdict policy's data-level fusion -------------------------------------------------------------


def _d(key: str, score: float, targets: list[int], indices: list[int], **evidence: Any) -> DetectionResult:
    flagged = score > 3.0
    return DetectionResult(key, score, 3.0, "suspicious" if flagged else "clean", targets if flagged else [],
                           dict(evidence), indices, 0.1)


LABELS = [7] * 8 + [1] * 4


def test_a_sample_needs_half_of_the_detectors_that_name_its_class() -> None:
    results = [_d("a", 9.0, [7], [0, 1, 2]), _d("b", 9.0, [7], [1, 2, 3]), _d("c", 9.0, [7], [2, 3, 4]),
               _d("d", 9.0, [7], [2, 5])]
    assert combine(results, labels=LABELS).suspicious_indices == [1, 2, 3]
    assert combine(results, VerdictPolicy(sample_agreement=0.0), LABELS).suspicious_indices == [0, 1, 2, 3, 4, 5]
    assert combine(results[:1], labels=LABELS).suspicious_indices == [0, 1, 2]  # a lone detector is its own half


def test_a_lone_detector_just_over_its_threshold_quarantines_nothing() -> None:
    marginal = [_d("a", 3.3, [7], [0, 1, 2])]  # probability ~0.6
    assert combine(marginal, labels=LABELS).suspicious_indices == []
    assert combine(marginal, VerdictPolicy(quarantine_confidence=0.0), LABELS).suspicious_indices == [0, 1, 2]
    assert combine([_d("a", 6.0, [7], [0, 1, 2])], labels=LABELS).suspicious_indices == [0, 1, 2]


def test_a_class_no_other_detector_ranks_first_is_not_quarantined() -> None:
    lone = _d("a", 12.0, [7], [0, 1, 2], ranking=[7, 1])
    others = [_d(k, 1.0, [], [], ranking=[1, 7]) for k in ("b", "c")]
    assert combine([lone, *others], labels=LABELS).suspicious_indices == []
    backed = [_d("b", 1.0, [], [], ranking=[7, 1]), others[1]]
    assert combine([lone, *backed], labels=LABELS).suspicious_indices == [0, 1, 2]
    assert combine([lone, *others], VerdictPolicy(class_support=1), LABELS).suspicious_indices == [0, 1, 2]


def test_the_split_of_a_detector_that_did_not_name_the_class_joins_the_sample_vote() -> None:
    namers = [_d("a", 9.0, [7], [0, 1, 2], ranking=[7]), _d("b", 9.0, [7], [3], ranking=[7])]
    assert combine(namers, labels=LABELS).suspicious_indices == [0, 1, 2, 3]
    splitter = _d("c", 2.0, [], [], ranking=[7], suspect_sides={"7": [0, 1, 3], "1": [8, 9]})
    # three opinions on class 7 now: a sample needs two of them; class 1 is named by nobody
    assert combine([*namers, splitter], labels=LABELS).suspicious_indices == [0, 1, 3]


@pytest.mark.parametrize("field", ["sample_agreement", "quarantine_confidence", "class_support"])
def test_invalid_data_level_policy_values_are_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VerdictPolicy(**{field: -1})


def test_without_labels_the_flagged_samples_are_the_union() -> None:
    results = [_d("a", 9.0, [7], [0, 1]), _d("b", 9.0, [7], [2])]
    assert combine(results).suspicious_indices == [0, 1, 2]
    assert combine(results, VerdictPolicy(min_votes=2)).suspicious_indices == []
