"""The use case end to end on a planted backdoor: ASR falls, accuracy holds, output valid, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from services.remediation.adapters.triggers import TriggerError, load_trigger
from services.remediation.domain.fine_pruning import RemediationConfig
from services.remediation.service_layer.remediate import RemediationError, remediate_model
from services.scanner.adapters.datasets import DataError
from services.scanner.adapters.onnx_model import ModelError, open_model

pytestmark = pytest.mark.unit


def test_unlearning_with_the_trigger_removes_the_planted_backdoor_within_the_accuracy_budget(
        planted: object, tmp_path: Path) -> None:
    trig = load_trigger(planted.trigger_npz, (64,))  # type: ignore[attr-defined]
    r = remediate_model(planted.model, planted.clean_npz, tmp_path / "f.onnx",  # type: ignore[attr-defined]
                        RemediationConfig(seed=2), trigger=trig)
    assert r.asr_before is not None and r.asr_after is not None
    assert r.asr_before > 0.9 and r.asr_after < 0.1
    assert r.accuracy_drop < 0.02 and r.meets_bar
    assert r.target == 7 and r.unlearning and r.n_holdout + r.n_tune == 400
    json.dumps(r.to_dict())


def test_blind_fine_pruning_prunes_dormant_units_and_writes_them_as_zeros(planted: object, tmp_path: Path) -> None:
    trig = load_trigger(planted.trigger_npz, (64,))  # type: ignore[attr-defined]
    out = tmp_path / "f.onnx"
    r = remediate_model(planted.model, planted.clean_npz, out, RemediationConfig(seed=0),  # type: ignore[attr-defined]
                        eval_trigger=trig)
    assert r.pruned.order == "dormant" and len(r.pruned.indices) > 0 and not r.unlearning
    assert r.asr_after is not None and r.accuracy_drop < 0.05
    p = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    idx = r.pruned.indices
    assert not p["W2"][idx].any() and not p["b2"][idx].any() and not p["W3"][:, idx].any()
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    fixed, parent = open_model(out), open_model(planted.model)  # type: ignore[attr-defined]
    assert fixed.input_shape == parent.input_shape and fixed.output_name == parent.output_name


def test_the_same_seed_gives_the_same_model_and_another_seed_another(planted: object, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> str:
        return remediate_model(planted.model, planted.clean_npz, tmp_path / name,  # type: ignore[attr-defined]
                               RemediationConfig(seed=seed, epochs=3)).output_sha256
    assert run(1, "a.onnx") == run(1, "b.onnx") != run(2, "c.onnx")


def test_progress_is_reported_per_stage(planted: object, tmp_path: Path) -> None:
    stages: set[str] = set()
    remediate_model(planted.model, planted.clean_npz, tmp_path / "f.onnx",  # type: ignore[attr-defined]
                    RemediationConfig(epochs=2), progress=lambda s, d, t: stages.add(s))
    assert {"measure", "prune", "fine-tune"} <= stages


def test_bad_inputs_raise_errors_that_name_the_problem(planted: object, tmp_path: Path) -> None:
    cfg = RemediationConfig(epochs=1)
    with pytest.raises(ModelError, match="not found"):
        remediate_model(tmp_path / "nope.onnx", planted.clean_npz, tmp_path / "f.onnx", cfg)  # type: ignore
    (tmp_path / "obj.npz").write_bytes(b"not a zip")  # numpy would read it as a pickle: refused before np.load
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        remediate_model(planted.model, tmp_path / "obj.npz", tmp_path / "f.onnx", cfg)  # type: ignore
    np.savez(tmp_path / "pickled.npz", x=np.array([object()], dtype=object), y=np.zeros(1, np.int64))
    with pytest.raises(DataError, match="pickled"):
        remediate_model(planted.model, tmp_path / "pickled.npz", tmp_path / "f.onnx", cfg)  # type: ignore
    np.savez(tmp_path / "t.npz", mask=np.ones(10, np.float32), pattern=np.ones(10, np.float32))
    with pytest.raises(TriggerError, match="do not fit"):
        load_trigger(tmp_path / "t.npz", (64,))
    with pytest.raises(RemediationError, match="overwrite"):
        remediate_model(planted.model, planted.clean_npz, planted.model, cfg)  # type: ignore[attr-defined]


def test_a_cnn_is_pruned_at_its_last_conv_through_the_use_case(cnn: tuple[Path, Path], tmp_path: Path) -> None:
    r = remediate_model(cnn[0], cnn[1], tmp_path / "c.onnx",
                        RemediationConfig(epochs=1, prune_accuracy_drop=1.0, max_prune_fraction=0.5))
    assert (r.pruned.kind, r.pruned.tensor, r.pruned.units, len(r.pruned.indices)) == ("conv", "r2", 8, 4)
    p = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "c.onnx")).graph.initializer}
    assert not p["C2"][r.pruned.indices].any() and not p["cb2"][r.pruned.indices].any()
    rows = [i * 16 + k for i in r.pruned.indices for k in range(16)]
    assert not p["W1"][rows].any()
