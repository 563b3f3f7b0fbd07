"""Remediating an all-to-all backdoor: the scanner's universal trigger guides unlearning with true labels,
and success is measured untargeted (no one class is the target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.zoo.attacks import attack_labels
from services.remediation.adapters.triggers import load_trigger
from services.remediation.domain.fine_pruning import RemediationConfig, split_indices
from services.remediation.domain.trigger import Trigger, untargeted_success_rate
from services.remediation.service_layer.rounds import remediate_in_rounds, reversed_trigger
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model

from ..conftest import AllToAll

pytestmark = pytest.mark.unit


def _true_asr(model: Path, case: AllToAll, cfg: RemediationConfig) -> float:
    """The planted attack's success on the held-out half: stamped inputs sent to their class + 1."""
    m = open_model(model)
    data = load_npz(case.clean_npz, m.input_shape)
    _, hold = split_indices(data.y, cfg.holdout_fraction, cfg.seed)
    x, y = data.x[hold], data.y[hold]
    pred = np.argmax(m.predict(case.attack.apply(x)), axis=1)
    return float(np.mean(pred == attack_labels(case.attack, y, m.num_classes)))


def test_untargeted_success_counts_inputs_moved_off_their_class() -> None:
    y = np.array([0, 1, 2, 3])
    clean_pred = np.array([0, 1, 2, 0])  # the last one is wrong already: not counted as moved
    assert untargeted_success_rate(clean_pred, np.array([1, 1, 0, 1]), y) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no one target"):
        Trigger(np.zeros(4, np.float32), np.zeros(4, np.float32), target=3, all_to_all=True)


def test_a_trigger_file_can_mark_an_all_to_all_trigger(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", mask=np.ones(64, np.float32) * 0.1, pattern=np.zeros(64, np.float32),
             all_to_all=np.bool_(True))
    trigger = load_trigger(tmp_path / "t.npz", (64,))
    assert trigger.all_to_all and trigger.target is None


def test_remediation_chases_the_universal_trigger_of_an_all_to_all_backdoor(
        all_to_all_model: AllToAll, tmp_path: Path) -> None:
    cfg = RemediationConfig()
    guide = reversed_trigger(all_to_all_model.model, all_to_all_model.clean_npz, cfg, seconds=60.0)
    assert guide.all_to_all and guide.target is None  # no class stands out; the universal trigger does

    final, reports = remediate_in_rounds(all_to_all_model.model, all_to_all_model.clean_npz, tmp_path, cfg)
    before, after = _true_asr(all_to_all_model.model, all_to_all_model, cfg), _true_asr(final, all_to_all_model, cfg)
    assert before > 0.8 and after < 0.1, (before, after)
    assert all(r.all_to_all and r.target is None for r in reports)
    assert reports[0].asr_before is not None and reports[-1].asr_after is not None
    assert reports[-1].asr_after < reports[0].asr_before  # the reversed trigger's own success fell too
    # two rounds of fine-tuning on 200 inputs: about 1-3 points on this MLP (the bar, 2, is reported, not assumed)
    assert reports[0].clean_accuracy_before - reports[-1].clean_accuracy_after < 0.05


def test_a_later_round_with_no_universal_search_left_keeps_the_last_model(
        all_to_all_model: AllToAll, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.remediation.service_layer import rounds

    # the remediated model now gives one class most predictions: the universal search has nothing to move
    monkeypatch.setattr(rounds, "universal_trigger", lambda *a, **k: 0.3)
    final, reports = remediate_in_rounds(all_to_all_model.model, all_to_all_model.clean_npz, tmp_path,
                                         RemediationConfig(epochs=5), rounds=3)
    assert len(reports) == 1 and reports[0].all_to_all and final == tmp_path / "round1.onnx"
