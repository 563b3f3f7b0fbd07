"""A verdict made with few clean inputs per class raises the bars of the detectors that read them, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.clean_set import (
    clean_sample_cap,
    few_inputs_note,
    inputs_per_class,
    missing_classes_note,
    threshold_factor,
)
from services.scanner.domain.detectors.neural_cleanse import DEFAULT_THRESHOLD as NC_BAR
from services.scanner.domain.fusion import DEFAULT_THRESHOLD as AGREEMENT_BAR
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import ScanConfig, scan_model

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit


def _labels(per_class: int, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


@pytest.mark.parametrize(("per_class", "factor"), [(40, 1.0), (20, 1.0), (15, 1.25), (10, 1.5), (3, 1.5)])
def test_bars_rise_linearly_below_twenty_inputs_per_class_up_to_one_and_a_half(per_class: int, factor: float) -> None:
    assert threshold_factor(_labels(per_class)) == pytest.approx(factor)
    assert (few_inputs_note(_labels(per_class)) is None) == (factor == 1.0)


def test_the_count_is_the_median_over_the_classes_present() -> None:
    y = np.concatenate([_labels(30, 5), np.full(2, 7)])  # five classes of 30, one stray class of 2
    assert inputs_per_class(y) == 30.0 and threshold_factor(y) == 1.0


def _few(zoo: Zoo, per_class: int) -> Dataset:
    data = load_npz(zoo.clean_npz)
    keep = np.concatenate([np.flatnonzero(data.y == c)[:per_class] for c in range(10)])
    return Dataset(data.x[keep], data.y[keep])


def test_scan_with_few_clean_inputs_raises_the_clean_data_bars_and_notes_it(zoo: Zoo) -> None:
    model = open_model(zoo.backdoored_model)
    verdict = scan_model(model, _few(zoo, 10))
    bars = {r.key: r.threshold for r in verdict.results}
    assert bars["neural_cleanse.v2"] == pytest.approx(NC_BAR * 1.5)
    assert bars["agreement.v1"] == pytest.approx(AGREEMENT_BAR * 1.5)
    assert bars["mmbd.v2"] == pytest.approx(4.0)  # reads only the input range
    assert len(verdict.notes) == 1 and "10 clean inputs per class" in verdict.notes[0]
    assert verdict.to_dict()["notes"] == verdict.notes
    assert verdict.backdoor_detected and verdict.target_classes[0] == ATTACK.target  # a clear trigger still shows


def test_thresholds_the_caller_sets_are_kept(zoo: Zoo) -> None:
    config = ScanConfig(params={"neural_cleanse.v2": {"threshold": 9.0}, "agreement.v1": {"threshold": 8.0}})
    verdict = scan_model(open_model(zoo.clean_model), _few(zoo, 10), config)
    bars = {r.key: r.threshold for r in verdict.results}
    assert bars["neural_cleanse.v2"] == 9.0 and bars.get("agreement.v1", 8.0) == 8.0


def test_a_full_clean_set_keeps_the_shipped_bars_and_adds_no_note(zoo: Zoo) -> None:
    verdict = scan_model(open_model(zoo.clean_model), load_npz(zoo.clean_npz))
    assert verdict.notes == [] and {r.key: r.threshold for r in verdict.results}["neural_cleanse.v2"] == 4.3


def test_clean_data_the_model_mostly_gets_wrong_is_named_in_the_verdict(zoo: Zoo) -> None:
    # usual mistakes: a preprocessing the model was not trained with (here inverted intensities), labels
    # in another class order
    data = load_npz(zoo.clean_npz)
    quick = ScanConfig(params={"neural_cleanse.v2": {"steps": 20}, "mmbd.v2": {"steps": 5, "starts": 2}})
    for wrong in (Dataset(1.0 - data.x, data.y), Dataset(data.x, np.roll(data.y, 1))):
        verdict = scan_model(open_model(zoo.clean_model), wrong, quick)
        assert any("preprocessed as the model expects" in n for n in verdict.notes)
    plain = scan_model(open_model(zoo.clean_model), data, quick)
    assert not any("preprocessed as the model expects" in n for n in plain.notes)


def test_a_many_class_scan_keeps_thirty_clean_inputs_per_class_not_three_hundred_in_all() -> None:
    assert clean_sample_cap(300, 10) == 300 and clean_sample_cap(300, 2) == 300
    assert clean_sample_cap(300, 100) == 3000


def _linear_model(prototypes: np.ndarray) -> onnx.ModelProto:
    """Logits: the input's dot product with each class's prototype."""
    classes, features = prototypes.shape
    w = prototypes.T.astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_forty_class_model_given_thirty_clean_inputs_per_class_keeps_the_shipped_bars(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((40, 16))
    onnx.save(_linear_model(prototypes), tmp_path / "m.onnx")
    model = open_model(tmp_path / "m.onnx")
    x = (3 * prototypes[np.repeat(np.arange(40), 60)] + rng.standard_normal((2400, 16))).astype(np.float32)
    y = np.argmax(model.logits(x), axis=1)
    keep = np.concatenate([np.flatnonzero(y == c)[:30] for c in range(40)])
    assert np.bincount(y[keep], minlength=40).min() == 30  # the clean set the user gives: 30 per class, 1,200
    quick = ScanConfig(params={"neural_cleanse.v2": {"steps": 20}, "mmbd.v2": {"steps": 5, "starts": 2}})
    verdict = scan_model(model, Dataset(x[keep], y[keep]), quick)
    assert not any("clean inputs per class" in n for n in verdict.notes), verdict.notes
    assert {r.key: r.threshold for r in verdict.results}["neural_cleanse.v2"] == NC_BAR


def test_classes_missing_from_the_clean_data_are_named_and_the_scan_still_finds_the_target(zoo: Zoo) -> None:
    data = load_npz(zoo.clean_npz)
    keep = np.isin(data.y, [c for c in range(10) if c not in (ATTACK.target, 2)])
    verdict = scan_model(open_model(zoo.backdoored_model), Dataset(data.x[keep], data.y[keep]))
    notes = [n for n in verdict.notes if "holds no input" in n]
    assert len(notes) == 1 and f"2 of the model's 10 classes (2, {ATTACK.target})" in notes[0]
    assert verdict.backdoor_detected and verdict.target_classes[0] == ATTACK.target
    assert missing_classes_note(data.y, 10) is None
    assert "and 5 more" in str(missing_classes_note(np.arange(5), 30))
