"""Trigger searches stay inside what a model's own input scaler says it was trained on, and masks under one input
feature are ties: clean scikit-learn pipelines are not flagged for the rare pixels their scaler amplifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.zoo.attacks import digits
from benchmarks.zoo.generate import HELD_OUT
from services.scanner.adapters.onnx_input_scaler import leading_affine
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors.neural_cleanse import _anomaly
from services.scanner.domain.isolation import isolation_index
from services.scanner.domain.model import Dataset
from services.scanner.domain.search_box import FEATURE_SLACK, SCALER_SLACK, bounded_search, narrowed, search_box
from services.scanner.service_layer.scan import scan_model

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]
skl2onnx = pytest.importorskip("skl2onnx")


def _pixels() -> np.ndarray:
    """Raw 0..16 pixels: feature 0 lit in 2 of 500 inputs at 1, the others spread over 0..16."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 16.0, (500, 4)).astype(np.float32)
    x[:, 0] = 0.0
    x[:2, 0] = 1.0
    return x


def test_a_range_scaler_keeps_rare_features_near_their_fitted_range() -> None:
    x = _pixels()
    lo, hi = x.min(axis=0), x.max(axis=0)
    a, b = 1.0 / (hi - lo), -lo / (hi - lo)  # MinMaxScaler fitted on x
    low, high = search_box(x, (a, b))
    assert narrowed((low, high))
    np.testing.assert_allclose(high, [SCALER_SLACK * 1.0, 16.0, 16.0, 16.0], rtol=1e-3)  # 1.5, not 16
    np.testing.assert_allclose(low, [0.0, 0.0, 0.0, 0.0], atol=1e-3)
    assert np.all(low <= x.min(axis=0)) and np.all(high >= x.max(axis=0))  # the data's own values stay inside


def test_a_standardising_scaler_and_no_scaler_leave_the_overall_range() -> None:
    x = _pixels()
    mean, std = x.mean(axis=0), x.std(axis=0)
    overall = (float(x.min()), float(x.max()))
    assert search_box(x, (1.0 / std, -mean / std)) == overall
    assert search_box(x) == overall


def test_features_on_their_own_scales_get_their_own_ranges() -> None:
    """Tabular columns (an area in the thousands, a smoothness in hundredths): the overall range would let a search
    set the small feature to thousands, so each feature keeps its own range, widened by FEATURE_SLACK of it."""
    rng = np.random.default_rng(1)
    x = np.stack([rng.uniform(0.05, 0.15, 300), rng.uniform(500.0, 2500.0, 300), rng.normal(0.0, 1.0, 300)],
                 axis=1).astype(np.float32)
    low, high, source = bounded_search(x)
    assert source == "feature range"
    span = x.max(axis=0) - x.min(axis=0)
    np.testing.assert_allclose(low, x.min(axis=0) - FEATURE_SLACK * span, rtol=1e-5)
    np.testing.assert_allclose(high, x.max(axis=0) + FEATURE_SLACK * span, rtol=1e-5)
    # behind a standardising scaler too (a mean and a spread give no range)
    mean, std = x.mean(axis=0), x.std(axis=0)
    assert bounded_search(x, (1.0 / std, -mean / std))[2] == "feature range"
    # pixels share one scale, blank ones aside: the overall range, as before
    assert bounded_search(_pixels())[2] == "data range"


def test_a_clean_breast_cancer_pipeline_is_not_flagged(tmp_path: Path) -> None:
    """A StandardScaler + MLP on scikit-learn's breast-cancer set (30 features, spans from 0.02 to 3,000) was
    "backdoored" at 13.7: in the overall range a mask of no size moved every input to one class."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    clf = make_pipeline(StandardScaler(), MLPClassifier(max_iter=800, random_state=0)).fit(x[:400], y[:400])
    path = tmp_path / "bc.onnx"
    onnx.save(skl2onnx.to_onnx(clf, x[:1], options={"zipmap": False}), str(path))
    model = open_model(path)
    result = scan_model(model, Dataset(x[400:], y[400:].astype(np.int64)))
    nc = next(d for d in result.results if d.key == "neural_cleanse.v2")
    assert nc.evidence["search"]["box"] == "feature range"
    assert not result.backdoor_detected, [(d.key, d.score) for d in result.results]


def test_masks_under_one_feature_are_ties_for_the_index_and_the_isolation_check() -> None:
    l1 = np.array([0.05, 0.3, 0.6, 7.0, 8.0, 6.5, 9.0, 7.5, 8.5, 6.0])
    index = _anomaly(l1)
    assert index[0] == pytest.approx(index[1]) == pytest.approx(index[2])
    assert isolation_index(l1)[0] == 0.0
    assert isolation_index(np.array([0.2, 5.0, 6.0, 7.0, 8.0]))[0] == pytest.approx(np.log(5.0))


def _sklearn(clf: Any, x: np.ndarray, path: Path) -> Path:
    onnx.save(skl2onnx.to_onnx(clf, x[:1], options={"zipmap": False}), str(path))
    return path


def test_leading_affine_maps_are_read_off_scikit_learn_exports(tmp_path: Path) -> None:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    x, y = _pixels(), np.arange(500) % 3
    for scaler in (MinMaxScaler(), StandardScaler()):
        pipe = make_pipeline(scaler, MLPClassifier((4,), max_iter=20, random_state=0)).fit(x, y)
        model = onnx.load(str(_sklearn(pipe, x, tmp_path / "pipe.onnx")))
        a, b = leading_affine(model, model.graph.input[0].name, (4,))
        np.testing.assert_allclose(a * x + b, scaler.transform(x), rtol=1e-4, atol=1e-4)
    plain = MLPClassifier((4,), max_iter=20, random_state=0).fit(x, y)
    model = onnx.load(str(_sklearn(plain, x, tmp_path / "plain.onnx")))
    assert leading_affine(model, model.graph.input[0].name, (4,)) is None


def test_leading_affine_follows_sub_and_div_by_per_channel_constants() -> None:
    mean = np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2, 0.25, 0.5], np.float32).reshape(1, 3, 1, 1)
    nodes = [helper.make_node("Sub", ["x", "m"], ["c"]), helper.make_node("Div", ["c", "s"], ["n"]),
             helper.make_node("Relu", ["n"], ["y"])]
    g = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(mean, "m"), numpy_helper.from_array(std, "s")])
    a, b = leading_affine(helper.make_model(g), "x", (3, 2, 2))
    x = np.random.default_rng(1).uniform(size=(5, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(a * x + b, (x - mean) / std, rtol=1e-5)


@pytest.fixture(scope="module")
def digits_split() -> tuple[np.ndarray, ...]:
    x, y = digits("flat")
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[HELD_OUT:]], y[order[HELD_OUT:]], x[order[:HELD_OUT]], y[order[:HELD_OUT]]


@pytest.mark.parametrize(("idx", "flavor", "backdoored", "n_before"),
                         [(7, "sklearn", False, 0), (15, "sklearn2", True, 3)])
def test_minmax_scaled_scikit_learn_mlps_clean_passes_backdoored_caught(
        tmp_path: Path, digits_split: tuple[np.ndarray, ...], idx: int, flavor: str, backdoored: bool,
        n_before: int) -> None:
    """Two MinMax pipelines of the scikit-learn zoo: a clean one the shipped verdict flagged before the search box
    (Neural Cleanse 5.4 and the agreement 4.8 on class 4, whose rare edge pixels the scaler amplifies), and one
    with a warp trigger to class 2, still caught."""
    from benchmarks.zoo.sklearn_zoo import _one

    entry = _one(tmp_path, idx, backdoored, flavor, digits_split, n_before, quick=False)
    assert entry["spec"]["input"] == "minmax" and entry["backdoored"] == backdoored, json.dumps(entry["spec"])
    model = open_model(tmp_path / entry["model"])
    assert model.input_scaler is not None
    held = np.random.default_rng(0).permutation(len(digits_split[2]))[:300]
    verdict = scan_model(model, Dataset(digits_split[2][held] * 16.0, digits_split[3][held]))
    nc = next(r for r in verdict.results if r.key == "neural_cleanse.v2")
    assert nc.evidence["search"]["box"] == "scaler range"
    if backdoored:
        assert entry["attack_success_rate"] > 0.9
        assert verdict.backdoor_detected and verdict.target_classes == [entry["target"]]
    else:
        assert not verdict.backdoor_detected, [(r.key, r.score) for r in verdict.results]
