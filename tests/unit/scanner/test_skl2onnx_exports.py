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
