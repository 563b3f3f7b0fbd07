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
    low_span_note,
    missing_classes_note,
    span_factor,
    span_ratio,
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


# ---------------------------------------------------------------- clean data that spans few input directions

def _upsampled_digits(scale: int) -> np.ndarray:
    """scikit-learn's 8 x 8 digits, each pixel drawn ``scale`` x ``scale``: as many directions as 8 x 8 pixels."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:300].astype(np.float32) / 16.0
    return np.kron(images, np.ones((scale, scale), np.float32)).reshape(300, -1)


def test_full_rank_data_spans_every_direction_and_keeps_the_bars() -> None:
    x = np.random.default_rng(0).normal(size=(300, 100)).astype(np.float32)
    assert span_ratio(x) == pytest.approx(1.0)
    assert span_factor(span_ratio(x)) == 1.0 and low_span_note(span_ratio(x)) is None
    assert span_ratio(_upsampled_digits(1)) == pytest.approx(1.0)  # the 8 x 8 digits themselves


def test_data_of_few_directions_raises_the_bars_and_says_how_few() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(300, 8)) @ rng.normal(size=(8, 200))).astype(np.float32)  # rank 8 in 200 features
    ratio = span_ratio(x)
    assert ratio == pytest.approx(8 / 200)
    assert span_factor(ratio) == pytest.approx(1.25)
    note = low_span_note(ratio)
    assert note is not None and "4%" in note and "x1.25" in note


@pytest.mark.parametrize(("scale", "raised"), [(2, False), (3, True), (4, True)])
def test_digits_drawn_larger_span_as_few_directions_as_their_small_originals(scale: int, raised: bool) -> None:
    # drawn 2 x 2 (the zoo CNNs' input, where the bars were set) keeps the bars; 3 x 3 and 4 x 4 raise them
    ratio = span_ratio(_upsampled_digits(scale))
    assert ratio < 0.3 and (span_factor(ratio) > 1.0) == raised


def test_the_rank_of_a_wide_input_is_measured_on_a_subset_of_its_features() -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(300, 5)) @ rng.normal(size=(5, 20_000))).astype(np.float32)
    assert span_ratio(x) == pytest.approx(5 / 299)


def test_a_many_class_clean_set_is_measured_on_a_subset_of_its_inputs() -> None:
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(5000, 40)) @ rng.normal(size=(40, 600))).astype(np.float32)  # rank 40 in 600 features
    assert span_ratio(x) == pytest.approx(40 / 600)


@pytest.mark.parametrize("x", [np.zeros((50, 30), np.float32), np.ones((2, 30), np.float32)])
def test_constant_or_tiny_data_cannot_tell_and_keeps_the_bars(x: np.ndarray) -> None:
    assert span_ratio(x) == 1.0


def _random_linear_model(path: Path, features: int) -> Path:
    w = numpy_helper.from_array(np.random.default_rng(3).normal(0, 0.1, (features, 10)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"])], "linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_scan_on_clean_data_of_few_directions_raises_the_clean_data_bars_and_notes_it(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    x = _upsampled_digits(4)
    y = load_digits().target[:300].astype(np.int64)
    model = open_model(_random_linear_model(tmp_path / "linear.onnx", x.shape[1]))
    config = ScanConfig(params={"neural_cleanse.v2": {"steps": 20}})
    verdict = scan_model(model, Dataset(x, y), config)
    factor = span_factor(span_ratio(x))
    assert factor > 1.0
    bars = {r.key: r.threshold for r in verdict.results}
    assert bars["neural_cleanse.v2"] == pytest.approx(NC_BAR * factor)
    assert bars["mmbd.v2"] == pytest.approx(4.0)  # reads only the input range
    assert any("span only" in note for note in verdict.notes)
    noisy = x + np.random.default_rng(4).normal(0, 0.05, x.shape).astype(np.float32)  # every direction moves
    plain = scan_model(model, Dataset(noisy, y), config)
    assert not any("span only" in note for note in plain.notes)
    assert {r.key: r.threshold for r in plain.results}["neural_cleanse.v2"] == pytest.approx(NC_BAR)
