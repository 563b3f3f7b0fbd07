"""all_to_all_poison.v1: training samples relabelled along one permutation of the classes (all-to-all poison)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from benchmarks.zoo.attacks import Attack, poison
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import create
from services.scanner.domain.detectors.all_to_all_poison import matched_pairs
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.model import Dataset
from services.scanner.domain.policy import combine
from services.scanner.entrypoints.cli import register
from services.scanner.service_layer.scan import DEFAULT_DATA_DETECTORS, scan_training_data
from tests.unit.conftest import ALL_TO_ALL, AllToAll, held_out_digits
from tests.unit.scanner.conftest import Zoo

pytestmark = pytest.mark.unit
KEY = "all_to_all_poison.v1"


def _poisoned(attack: Attack, seed: int) -> tuple[Dataset, set[int]]:
    x, y, _te, tr = held_out_digits()
    xp, yp, idx = poison(x[tr], y[tr], attack, seed=seed)
    return Dataset(xp.astype(np.float32), yp.astype(np.int64)), set(idx.tolist())


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _precision_recall(found: list[int], truth: set[int]) -> tuple[float, float]:
    hit = len(set(found) & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


@pytest.mark.parametrize(("kind", "rate", "seed"), [("sig", 0.2, 3), ("patch", 0.15, 4), ("blend", 0.15, 5),
                                                    ("dispersed", 0.15, 6)])
def test_all_to_all_poison_of_several_trigger_kinds_is_found_sample_by_sample(zoo: Zoo, kind: str, rate: float,
                                                                               seed: int) -> None:
    attack = replace(ALL_TO_ALL, kind=kind, rate=rate, pattern_seed=seed, alpha=0.2 if kind == "blend" else 0.15)
    data, truth = _poisoned(attack, seed)
    result = create(KEY).fit(open_model(zoo.clean_model), data).result()
    precision, recall = _precision_recall(result.suspicious_indices, truth)
    assert result.flagged and result.target_classes == [] and result.evidence["all_classes"] is True
    assert precision >= 0.85 and recall >= 0.8, (kind, precision, recall, result.evidence)
    assert all(label == (content + 1) % 10 for label, content, *_ in result.evidence["pairs"][:8])  # c -> c + 1


@pytest.mark.parametrize("which", ["clean_train_npz", "train_npz", "blend_train_npz"])
def test_clean_and_all_to_one_training_sets_stay_under_the_bar(zoo: Zoo, which: str) -> None:
    model = open_model(zoo.clean_model)
    result = create(KEY).fit(model, load_npz(getattr(zoo, which), model.input_shape)).result()
    assert not result.flagged and result.suspicious_indices == [] and result.score < 0.8


def test_two_classes_are_out_of_scope_and_say_so() -> None:
    x, y, _te, tr = held_out_digits()
    keep = np.isin(y[tr], (0, 1))
    data = Dataset(x[tr][keep].astype(np.float32), y[tr][keep].astype(np.int64))

    class TwoClasses:
        num_classes, input_shape = 2, tuple(data.x.shape[1:])

    result = create(KEY).fit(TwoClasses(), data).result()  # type: ignore[arg-type]
    assert not result.flagged and "three classes" in result.evidence["note"]


def test_matched_pairs_are_one_to_one_off_the_diagonal_largest_first() -> None:
    confusion = np.array([[90, 8, 2], [1, 95, 30], [20, 4, 70]])
    assert matched_pairs(confusion) == [(1, 2), (2, 0), (0, 1)]
    assert matched_pairs(np.diag([5, 5, 5])) == []


def test_the_default_data_scan_quarantines_all_to_all_poison(all_to_all_model: AllToAll, tmp_path: Path) -> None:
    assert KEY in DEFAULT_DATA_DETECTORS
    data, truth = _poisoned(ALL_TO_ALL, seed=3)  # the training set the fixture's model learnt its backdoor from
    verdict = scan_training_data(open_model(all_to_all_model.model), data)
    precision, recall = _precision_recall(verdict.suspicious_indices, truth)
    assert verdict.backdoor_detected and precision >= 0.85 and recall >= 0.8, (precision, recall)


def test_scan_data_on_the_command_line_says_the_poison_spans_every_class(all_to_all_model: AllToAll,
                                                                         tmp_path: Path) -> None:
    data, _truth = _poisoned(ALL_TO_ALL, seed=3)
    np.savez(tmp_path / "train.npz", x=data.x, y=data.y)
    res = CliRunner().invoke(_app(), ["scan-data", str(all_to_all_model.model), "--data",
                                           str(tmp_path / "train.npz"), "--detectors", "all_to_all_poison"])
    assert res.exit_code == 1, res.output
    assert "all_to_all_poison.v1: " in res.output and "every class" in res.output
    assert "permutation of the classes" in res.output


def test_samples_of_a_finding_over_every_class_survive_the_class_filter_of_the_policy() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    named = DetectionResult("trigger_response.v2", 5.0, 3.0, "suspicious", [1], {"ranking": [1, 0, 2]}, [2, 3],
                            0.1)
    support = DetectionResult("strip.v1", 4.0, 3.0, "suspicious", [1], {"ranking": [1, 0, 2]}, [2, 3], 0.1)
    every = DetectionResult(KEY, 1.4, 1.0, "suspicious", [], {"all_classes": True}, [0, 4], 0.1)
    assert combine([named, support, every], labels=labels).suspicious_indices == [0, 2, 3, 4]
    assert combine([named, support], labels=labels).suspicious_indices == [2, 3]
    below = DetectionResult(KEY, 0.6, 1.0, "clean", [], {}, [], 0.1)
    assert combine([named, support, below], labels=labels).suspicious_indices == [2, 3]
