"""Models exported by skl2onnx itself (not built by hand) open with their logits, not their probabilities.

skl2onnx ends an MLPClassifier with ``Softmax -> Identity`` (tf2onnx leaves the same Identity). When the tape
did not look through that Identity it differentiated the probabilities' logarithm, clipped at 1e-12: on a
confident model every class's largest margin then saturated at the same value and MM-BD's per-class index was 0
for every class (a blind detector, with no error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

skl2onnx = pytest.importorskip("skl2onnx")

from services.scanner.adapters.onnx_model import open_model  # noqa: E402
from services.scanner.domain.detectors.mmbd import max_margins  # noqa: E402

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def _export(clf: Any, x: np.ndarray, path: Path, zipmap: bool) -> Path:
    onnx.save(skl2onnx.to_onnx(clf, x[:1], options=None if zipmap else {"zipmap": False}), str(path))
    return path


def _pre_softmax(path: Path, x: np.ndarray) -> np.ndarray:
    """The tensor that feeds the graph's Softmax, read by onnxruntime with that tensor exposed as an output."""
    m = onnx.load(str(path))
    name = next(n.input[0] for n in m.graph.node if n.op_type == "Softmax")
    m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([name], {session.get_inputs()[0].name: x})[0])


@pytest.mark.parametrize("zipmap", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_an_exported_mlp_classifier_is_differentiated_at_its_logits(tmp_path: Path, zipmap: bool, scaled: bool) -> None:
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    mlp = MLPClassifier((16,), max_iter=300, random_state=0)
    clf = make_pipeline(StandardScaler(), mlp) if scaled else mlp
    clf.fit(x[:600], y[:600])
    model = open_model(_export(clf, x, tmp_path / "mlp.onnx", zipmap))
    assert model.exact_gradients and model.num_classes == 10
    probe = x[600:640]
    np.testing.assert_allclose(model.predict(probe), clf.predict_proba(probe), atol=1e-5)
    z, _ = model.value_and_grad(probe, lambda out: np.zeros_like(out))
    np.testing.assert_allclose(z, _pre_softmax(tmp_path / "mlp.onnx", probe), rtol=1e-5, atol=1e-4)
    # the largest margins are the logits', so classes differ; log-probabilities clipped at 1e-12 gave every
    # class the same saturated margin
    margins = max_margins(model, 0.0, 16.0, starts=4, steps=30, lr=0.05, rng=np.random.default_rng(0))
    assert margins.max() > np.log(1e12) + 1.0
    assert np.ptp(np.log(margins)) > 0.1


def test_a_tree_ensemble_is_refused_by_the_model_scan_and_scanned_by_scan_data(tmp_path: Path) -> None:
    """A random forest's probabilities are constant between split thresholds: the gradient-free estimate has
    nothing to follow, and a clean forest scored 15.8 on Neural Cleanse's bar of 4.3. The model-level scan says so
    (exit 2) and points at scan-data, which reads the training set and runs."""
    import typer
    from sklearn.ensemble import RandomForestClassifier
    from typer.testing import CliRunner

    from services.scanner.entrypoints.cli import register

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    forest = RandomForestClassifier(20, random_state=0).fit(x[400:], y[400:])
    model = _export(forest, x, tmp_path / "forest.onnx", zipmap=True)
    np.savez(tmp_path / "clean.npz", x=x[:300], y=y[:300])
    np.savez(tmp_path / "train.npz", x=x[400:900], y=y[400:900])
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["scan", str(model), "--clean-data", str(tmp_path / "clean.npz")])
    assert res.exit_code == 2 and "piecewise-constant" in res.output and "scan-data" in res.output
    res = CliRunner().invoke(app, ["scan-data", str(model), "--data", str(tmp_path / "train.npz")])
    assert res.exit_code == 0, res.output


def test_an_svm_is_costed_by_its_support_vectors(tmp_path: Path) -> None:
    """An SVC's forward pass is a kernel row against every support vector: counted as one operation per output it
    got the full trigger search of a cheap model and took minutes; counted by its support vectors, the work budget
    sizes the search."""
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)[:300]
    svc = SVC(probability=True, random_state=0).fit(x, y[:300])
    model = open_model(_export(svc, x, tmp_path / "svc.onnx", zipmap=False))
    assert model.macs_per_sample >= 2 * svc.support_vectors_.size


def _digits_unit(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32)[:n], y[:n]


@pytest.mark.parametrize("kernel", ["rbf", "poly", "linear", "sigmoid", "nu"])
def test_an_exported_svc_gets_exact_gradients_through_its_kernel(tmp_path: Path, kernel: str) -> None:
    """skl2onnx exports an SVC as an SVMClassifier (one decision per class pair) followed by scikit-learn's
    one-vs-rest vote-and-confidence decision (ArrayFeatureExtractor, Sum, Less ...). Without rules for them the scan
    estimated gradients and took over two minutes on a digits SVC."""
    from sklearn.svm import SVC, NuSVC

    x, y = _digits_unit(700)
    clf = NuSVC(nu=0.1) if kernel == "nu" else SVC(kernel=kernel, gamma=0.05 if kernel == "sigmoid" else "scale")
    clf.fit(x[:500], y[:500])
    model = open_model(_export(clf, x, tmp_path / "svc.onnx", zipmap=False))
    assert model.exact_gradients, model.gradient_note
    probe = x[500:564].astype(np.float64)
    np.testing.assert_array_equal(model.predict(probe.astype(np.float32)).argmax(axis=1), clf.predict(probe))
    c = np.random.default_rng(1).normal(size=(len(probe), 10)).astype(np.float32)
    grad = model.value_and_grad(probe.astype(np.float32), lambda z: c)[1]
    decision = clf.decision_function  # the graph's output is scikit-learn's one-vs-rest decision function
    for feature in (20, 21, 36):
        d = np.zeros_like(probe)
        d[:, feature] = 1e-4
        num = ((decision(probe + d) - decision(probe - d)) * c).sum(axis=1) / 2e-4
        close = np.isclose(grad[:, feature], num, rtol=2e-2, atol=2e-3)
        # a pair decision crossing 0 inside the difference flips a vote, a step the gradient rightly ignores
        assert close.mean() >= 0.95, (grad[~close, feature], num[~close])


def test_a_two_class_svc_is_read_in_class_order(tmp_path: Path) -> None:
    """onnxruntime writes a two-class SVMClassifier's scores as [-d, d] where d > 0 means the first class: read as
    class columns the model got every clean input wrong, and a clean one-vs-rest SVC was flagged for its other
    class."""
    from sklearn.svm import SVC

    x, y = _digits_unit(700)
    positive = (y == 3).astype(int)
    svc = SVC().fit(x[:500], positive[:500])
    model = open_model(_export(svc, x, tmp_path / "svc2.onnx", zipmap=False))
    assert model.exact_gradients and model.num_classes == 2
    assert any("[-d, d]" in note for note in model.notes)
    np.testing.assert_array_equal(model.predict(x[500:]).argmax(axis=1), svc.predict(x[500:]))
    z, _ = model.value_and_grad(x[500:520], lambda out: np.zeros_like(out))
    np.testing.assert_allclose(z[:, 1], svc.decision_function(x[500:520]), rtol=1e-4, atol=1e-4)


def test_platt_probabilities_keep_the_gradient_free_estimate_and_say_why(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    x, y = _digits_unit(300)
    svc = SVC(probability=True, random_state=0).fit(x, y)
    model = open_model(_export(svc, x, tmp_path / "svcp.onnx", zipmap=False))
    assert not model.exact_gradients and "Platt" in model.gradient_note


def test_a_kernel_svm_barely_moved_by_blank_pixels_is_not_pushed_toward_a_class(tmp_path: Path) -> None:
    """A polynomial SVC is moved by a blank-margin pixel only through the few support vectors lit there: pushes of
    0.01-0.05 on two or three classes and 0 on the rest read as a dormant-feature z of 4-158 before pushes counted from
    NOISE_PUSH up."""
    from sklearn.svm import SVC

    from services.scanner.domain.detectors.dormant_features import DormantFeatures
    from services.scanner.domain.model import Dataset

    x, y = _digits_unit(1400)
    svc = SVC(kernel="poly", degree=3).fit(x[:1000], y[:1000])
    model = open_model(_export(svc, x, tmp_path / "poly.onnx", zipmap=False))
    result = DormantFeatures().fit(model, Dataset(x[1000:], y[1000:].astype(np.int64))).result()
    assert max(result.evidence["push"]) < 0.1  # rounding next to a neural net's pushes (1.7-130)
    assert not result.flagged and result.score < 0.75 * result.threshold


def test_a_naive_bayes_model_is_differentiated_at_its_log_probabilities(tmp_path: Path) -> None:
    """skl2onnx ends GaussianNB with Exp(x - ReduceLogSumExp(x)). Its float32 probabilities are exactly 0 or 1 away
    from the data (a blank pixel has almost no variance), so read off them every class but one was out of reach
    and Neural Cleanse's index came out at 16,572 on a clean model; the log-probabilities keep their gradients."""
    from sklearn.naive_bayes import GaussianNB

    x, y = _digits_unit(1400)
    gnb = GaussianNB().fit(x[:1000], y[:1000])
    model = open_model(_export(gnb, x, tmp_path / "gnb.onnx", zipmap=False))
    assert model.exact_gradients and model.tape is not None and model.tape.applied_softmax
    probe = x[1000:1032]
    z, g = model.value_and_grad(probe, lambda out: np.eye(10, dtype=np.float32)[np.full(len(out), 5)])
    np.testing.assert_allclose(z, gnb.predict_log_proba(probe), rtol=1e-3, atol=1e-2)
    assert z.min() < -1000  # far below the 1e-12 clip of the probabilities
    assert np.abs(g).sum() > 0
