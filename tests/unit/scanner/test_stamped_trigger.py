"""stamped_trigger.v1: samples sharing the same values on the same features across contents, labelled against it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.zoo.attacks import Attack, poison
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import create
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.detectors.stamped_trigger import distinct_features
from services.scanner.domain.model import Dataset
from services.scanner.domain.policy import combine
from services.scanner.service_layer.scan import DEFAULT_DATA_DETECTORS, scan_training_data
from tests.unit.conftest import held_out_digits
from tests.unit.scanner.conftest import Zoo

pytestmark = pytest.mark.unit
KEY = "stamped_trigger.v1"
FRAME = Attack("frame", target=3, rate=0.08, size=1, row=0, col=0, pattern_seed=1)


class _Shape:
    """What the detector asks of a model: the class count and the input shape (it reads no outputs)."""

    def __init__(self, data: Dataset, num_classes: int = 10) -> None:
        self.num_classes, self.input_shape = num_classes, tuple(data.x.shape[1:])


def _train() -> Dataset:
    x, y, _te, tr = held_out_digits()
    return Dataset(x[tr].astype(np.float32), y[tr].astype(np.int64))


def _poisoned(attack: Attack, seed: int, x: np.ndarray | None = None) -> tuple[Dataset, set[int]]:
    clean = _train()
    xp, yp, idx = poison(clean.x if x is None else x, clean.y, attack, seed=seed)
    return Dataset(xp.astype(np.float32), yp.astype(np.int64)), set(idx.tolist())


def _run(data: Dataset) -> DetectionResult:
    return create(KEY).fit(_Shape(data), data).result()  # type: ignore[arg-type]


def _precision_recall(found: list[int], truth: set[int]) -> tuple[float, float]:
    hit = len(set(found) & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


@pytest.mark.parametrize(("attack", "seed"), [
    (FRAME, 1),
    (replace(FRAME, row=7, col=7, target=6), 2),  # the opposite borders
    (Attack("dispersed", target=1, rate=0.06, size=5, pattern_seed=11), 3),
    (Attack("patch", target=8, rate=0.1, size=3, row=0, col=5, pattern_seed=7), 4),
    (Attack("blend", target=5, rate=0.06, alpha=0.2, pattern_seed=5), 5),  # constant on the digits' blank margin
])
def test_an_all_to_one_stamp_is_found_sample_by_sample_and_names_its_target(attack: Attack, seed: int) -> None:
    data, truth = _poisoned(attack, seed)
    result = _run(data)
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and result.target_classes == [attack.target], result.evidence
    assert precision >= 0.95 and recall >= 0.9, (attack.kind, precision, recall, result.evidence)
    assert result.evidence["stands_alone"] is True and result.evidence["all_classes"] is False


def test_a_source_specific_stamp_flags_the_relabelled_samples_and_leaves_the_cover_alone() -> None:
    attack = replace(FRAME, source=7, target=2, rate=0.05)
    data, truth = _poisoned(attack, 6)
    result = _run(data)
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and result.target_classes == [2]
    # as many cover samples of other classes carry the frame under their own label: about half the stamped
    assert 0.35 <= result.evidence["mismatch_share"] <= 0.65, result.evidence
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_an_all_to_all_stamp_spans_every_class() -> None:
    data, truth = _poisoned(replace(FRAME, row=7, rate=0.15, all_to_all=True), 7)
    result = _run(data)
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and result.target_classes == [] and result.evidence["all_classes"] is True
    assert precision >= 0.95 and recall >= 0.85, (precision, recall)


@pytest.mark.parametrize("layout", ["flat", "upsampled", "grey_rgb"])
def test_clean_digits_carry_no_stamp_whatever_their_layout(layout: str) -> None:
    clean = _train()
    img = clean.x.reshape(-1, 1, 8, 8)
    x = {"flat": clean.x, "upsampled": np.kron(img, np.ones((2, 2), np.float32)),  # features copied 2 x 2
         "grey_rgb": np.repeat(img, 3, axis=1)}[layout]  # three identical channels
    result = _run(Dataset(x.astype(np.float32), clean.y))
    assert not result.flagged and result.suspicious_indices == [] and result.score < 1.0, result.evidence


def test_a_frame_on_upsampled_images_is_found() -> None:
    clean = _train()
    up = np.kron(clean.x.reshape(-1, 1, 8, 8), np.ones((2, 2), np.float32))
    data, truth = _poisoned(FRAME, 8, x=up)
    result = _run(data)
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and precision >= 0.95 and recall >= 0.9, (precision, recall, result.evidence)


def test_a_mark_that_keeps_the_labels_true_is_not_poison() -> None:
    """A watermark on part of the data, on samples of several classes, labels unchanged (no relabelling)."""
    clean = _train()
    rng = np.random.default_rng(9)
    marked = rng.choice(len(clean.x), size=len(clean.x) // 8, replace=False)
    x = clean.x.copy()
    x[np.ix_(marked, np.array([0, 1, 8, 9]))] = 0.8
    result = _run(Dataset(x, clean.y))
    assert result.evidence["stamps"] >= 1 and not result.flagged, result.evidence


def test_a_mark_carried_by_most_of_one_class_is_not_read_as_its_relabelling() -> None:
    """Leaving the stamped samples out must leave their class: a mark on 90% of the 3s (a style, a source's
    logo) leaves a few odd 3s, whose neighbours are other digits."""
    clean = _train()
    threes = np.flatnonzero(clean.y == 3)
    marked = np.random.default_rng(10).choice(threes, size=int(0.9 * len(threes)), replace=False)
    x = clean.x.copy()
    x[np.ix_(marked, np.array([56, 57, 58, 59]))] = 0.9
    result = _run(Dataset(x, clean.y))
    assert not result.flagged and result.suspicious_indices == [], result.evidence


def test_features_that_copy_each_other_count_once_but_a_frame_on_a_blank_margin_does_not() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 10, size=200)
    stamped = np.zeros(200, dtype=bool)
    stamped[:20] = True
    q = np.stack([base, base, np.where(stamped, 100, 0), np.where(stamped, 100, 0), base + 1], axis=1)
    outside = ~stamped
    assert distinct_features(q, [0, 1, 4], outside, min_rows=10) == [0, 4]  # 1 copies 0; 4 never equals 0
    assert distinct_features(q, [2, 3], outside, min_rows=10) == [2, 3]  # blank outside the stamp: nothing to compare


def test_too_few_stamped_samples_flag_nothing() -> None:
    data, _truth = _poisoned(replace(FRAME, rate=0.003), 11)  # 4 samples
    assert not _run(data).flagged


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="max_class_share"):
        create(KEY, max_class_share=0.0)
    with pytest.raises(ValueError, match="min_features"):
        create(KEY, min_features=1)


def test_samples_that_stand_alone_survive_the_class_filter_of_the_policy() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    named = DetectionResult("trigger_response.v2", 5.0, 3.0, "suspicious", [1], {"ranking": [1, 0, 2]}, [2, 3], 0.1)
    support = DetectionResult("strip.v1", 4.0, 3.0, "suspicious", [1], {"ranking": [1, 0, 2]}, [2, 3], 0.1)
    stamped = DetectionResult(KEY, 1.4, 1.0, "suspicious", [2], {"stands_alone": True}, [4, 5], 0.1)
    assert combine([named, support, stamped], labels=labels).suspicious_indices == [2, 3, 4, 5]
    alone = replace(stamped, evidence={})
    assert combine([named, support, alone], labels=labels).suspicious_indices == [2, 3]


def test_the_default_data_scan_quarantines_a_thin_frame(zoo: Zoo) -> None:
    assert KEY in DEFAULT_DATA_DETECTORS
    data, truth = _poisoned(FRAME, 12)
    verdict = scan_training_data(open_model(zoo.clean_model), data)
    precision, recall = _precision_recall(verdict.suspicious_indices, truth)
    assert verdict.backdoor_detected and precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_a_stamp_on_more_rows_than_are_read_is_judged_on_a_sample_and_flagged_on_all_its_rows() -> None:
    data, truth = _poisoned(replace(FRAME, rate=0.1), 13)  # 140 stamped rows, 100 read to judge the stamp
    result = create(KEY, max_rows=100).fit(_Shape(data), data).result()  # type: ignore[arg-type]
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and result.evidence["stamped"] == len(truth)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall, result.evidence)


def test_a_patch_whose_values_the_other_classes_hold_often_is_found_within_its_target_class() -> None:
    """A source-specific patch on the digits' ink: across the whole set its cells' values are common, so its
    samples share them with many others; within the target class they stand out."""
    attack = Attack("patch", target=4, source=5, rate=0.06, size=3, row=1, col=2, pattern_seed=24423)
    data, truth = _poisoned(attack, 14)
    whole_set_only = create(KEY, per_class=False).fit(_Shape(data), data).result()  # type: ignore[arg-type]
    result = _run(data)
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert not whole_set_only.flagged
    assert result.flagged and result.target_classes == [4] and precision >= 0.85 and recall >= 0.9, (
        precision, recall, result.evidence)
