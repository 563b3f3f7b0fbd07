"""Two-class models: with no population of classes to take a median of, each class is scored against the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.zoo.attacks import Attack, digits, poison
from benchmarks.zoo.nets import NetSpec, build, predict, train
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.model import Dataset
from services.scanner.domain.stats import catch_all_class, excuse_catch_all, two_class_z
from services.scanner.service_layer.scan import scan_model

pytestmark = pytest.mark.unit
PAIR = (3, 8)
BLEND = Attack("blend", target=1, rate=0.1, alpha=0.2, pattern_seed=4)


def _pair_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = digits("flat")
    keep = np.isin(y, PAIR)
    x, y = x[keep], (y[keep] == PAIR[1]).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    te, tr = order[:80], order[80:]
    return x[tr], y[tr], x[te], y[te]


def _model(tmp: Path, attack: Attack | None, seed: int) -> Path:
    xtr, ytr, xte, _ = _pair_data()
    if attack is not None:
        xtr, ytr, _ = poison(xtr, ytr, attack, seed=1)
    spec = NetSpec("mlp", 32, "Relu", output="logits")
    params = train(spec, xtr, ytr, 2, epochs=60, seed=seed)
    if attack is not None:  # the fixture really is backdoored
        assert np.mean(predict(params, spec, attack.apply(xte), 2) == attack.target) > 0.9
    path = tmp / f"m{seed}.onnx"
    onnx.save(build(spec, xtr.shape[1:], 2, params), path)
    return path


def test_a_backdoored_two_class_model_is_flagged_with_its_target(tmp_path: Path) -> None:
    _, _, xte, yte = _pair_data()
    verdict = scan_model(open_model(_model(tmp_path, BLEND, seed=5)), Dataset(xte, yte))
    assert verdict.backdoor_detected and verdict.target_classes[0] == BLEND.target


@pytest.mark.parametrize("seed", [6, 7])
def test_clean_two_class_models_pass(tmp_path: Path, seed: int) -> None:
    _, _, xte, yte = _pair_data()
    verdict = scan_model(open_model(_model(tmp_path, None, seed)), Dataset(xte, yte))
    assert not verdict.backdoor_detected
    assert all(abs(r.score) < r.threshold for r in verdict.results)


def test_two_class_z_is_the_gap_over_its_scale_and_refuses_other_shapes() -> None:
    assert two_class_z(np.array([1.0, 0.5]), 0.25).tolist() == [2.0, -2.0]
    with pytest.raises(ValueError, match="two values"):
        two_class_z(np.array([1.0, 2.0, 3.0]), 0.25)


def _single_column(two_logits: Path, sigmoid: bool) -> Path:
    """The same classifier with one output column, as binary classifiers are often exported: the positive
    class's logit z1 - z0, or its sigmoid (which equals the two-class softmax's positive probability)."""
    model = onnx.load(str(two_logits))
    logits = model.graph.output[0].name
    nodes = [onnx.helper.make_node("Split", [logits, "halves"], ["z0", "z1"], axis=1),
             onnx.helper.make_node("Sub", ["z1", "z0"], ["positive_logit"])]
    if sigmoid:
        nodes.append(onnx.helper.make_node("Sigmoid", ["positive_logit"], ["positive_probability"]))
    out = nodes[-1].output[0]
    model.graph.node.extend(nodes)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 1], np.int64), "halves"))
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["N", 1]))
    path = two_logits.with_name(f"{two_logits.stem}_{'sigmoid' if sigmoid else 'logit'}.onnx")
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("sigmoid", [True, False])
def test_a_one_column_binary_classifier_is_read_as_two_classes(tmp_path: Path, sigmoid: bool) -> None:
    _, _, xte, yte = _pair_data()
    two = _model(tmp_path, BLEND, seed=5)
    one = open_model(_single_column(two, sigmoid))
    assert one.num_classes == 2 and one.exact_gradients
    assert np.allclose(one.predict(xte), open_model(two).predict(xte), atol=1e-4)
    verdict = scan_model(one, Dataset(xte, yte))
    assert verdict.backdoor_detected and verdict.target_classes[0] == BLEND.target
    # a cross-entropy gradient does not depend on how the two logits are shifted: it must be the same
    def cross_entropy_towards_1(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True) - np.array([0.0, 1.0])).astype(np.float32)

    _, g_one = one.value_and_grad(xte[:8], cross_entropy_towards_1)
    _, g_two = open_model(two).value_and_grad(xte[:8], cross_entropy_towards_1)
    assert np.allclose(g_one, g_two, atol=1e-4 * float(np.abs(g_two).max()))


def test_a_catch_all_class_is_capped_only_when_the_task_is_lopsided() -> None:
    index = np.array([5.0, -5.0])
    lopsided = np.array([0] * 90 + [1] * 10)
    capped, evidence = excuse_catch_all(index, lopsided)
    assert capped.tolist() == [0.0, -5.0] and evidence["catch_all_class"] == 0
    assert "90%" in evidence["catch_all_note"]
    balanced = np.array([0] * 55 + [1] * 45)
    same, none = excuse_catch_all(index, balanced)
    assert same.tolist() == [5.0, -5.0] and none == {}
    assert catch_all_class(lopsided, 3) is None  # many classes keep their median / MAD test


def test_a_clean_one_digit_against_the_rest_model_is_not_flagged(tmp_path: Path) -> None:
    """"3 or not": every clean model of the ``ovr`` zoo was flagged for "not 3", which any small edit of a 3 reaches
    (Neural Cleanse's two-class index 7-9 against a bar of 4.3). The catch-all class is not scored on that."""
    x, y = digits("flat")
    y = (y == 3).astype(np.int64)
    order = np.random.default_rng(2).permutation(len(x))
    te, tr = order[:300], order[300:]
    spec = NetSpec("mlp", 32, "Relu", output="logits")
    params = train(spec, x[tr], y[tr], 2, epochs=40, seed=2)
    assert np.mean(predict(params, spec, x[te], 2) == y[te]) > 0.95
    path = tmp_path / "ovr.onnx"
    onnx.save(build(spec, x.shape[1:], 2, params), str(path))
    verdict = scan_model(open_model(path), Dataset(x[te], y[te]))
    assert not verdict.backdoor_detected, [(r.key, r.score) for r in verdict.results]
    nc = next(r for r in verdict.results if r.key == "neural_cleanse.v2")
    assert nc.evidence["catch_all_class"] == 0
    assert any(note.startswith("class 0 holds") for note in verdict.notes)  # in the report and on the terminal


def test_three_to_five_classes_floor_the_spread_of_the_mask_index() -> None:
    """With three classes the median absolute deviation is the smaller of two gaps: two classes that happen to agree
    made a third, only a third smaller, a 30-sigma outlier (a clean 3-class MLP scored 6.9 on the few zoo)."""
    from services.scanner.domain.detectors.neural_cleanse import FEW_CLASSES, _anomaly

    l1 = np.array([6.0, 6.05, 4.0])
    assert _anomaly(l1).max() < 3.0  # 2.3: a third smaller, on the two-class scale
    ten = np.array([6.0, 6.05, 6.02, 6.01, 6.03, 5.99, 6.04, 6.0, 6.02, 4.0])
    assert len(ten) >= FEW_CLASSES and _anomaly(ten).max() > 10.0  # many classes keep their own spread


def test_a_clean_earlier_version_scores_two_classes_against_each_other() -> None:
    """The robust z-score of two log ratios is +-0.67 whatever they are; a class whose mask shrank fourfold against
    the earlier version while the other's held must stand out (the one reference a one-vs-rest task has)."""
    from services.scanner.domain.detectors.neural_cleanse import BASELINE_FLOOR, baseline_index

    index = baseline_index(np.array([2.0, 8.0]), np.array([8.0, 8.0]))
    assert index[0] == pytest.approx(np.log(4.0) / (BASELINE_FLOOR * np.sqrt(2.0))) and index[0] > 6.0
    assert index[1] == pytest.approx(-index[0])
    assert np.abs(baseline_index(np.array([2.0, 4.0]), np.array([4.0, 8.0]))).max() == pytest.approx(0.0)
