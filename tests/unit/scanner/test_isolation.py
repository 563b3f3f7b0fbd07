"""The isolation check: a class whose reversed trigger is far smaller than the runner-up's is named."""

from __future__ import annotations

import numpy as np
import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.isolation import KEY, isolated_trigger, isolation_index
from services.scanner.service_layer.scan import ScanConfig, scan_model

from .conftest import ATTACK, Zoo

pytestmark = pytest.mark.unit


def _nc(l1: list[float]) -> DetectionResult:
    triggers = {int(np.argmin(l1)): (np.ones((8, 8), np.float32), np.zeros(64, np.float32))}
    return DetectionResult("neural_cleanse.v2", 1.0, 4.3, "clean", [], {"l1_norms": l1}, [], 0.1, triggers)


def test_the_index_is_the_gap_between_the_smallest_trigger_and_the_runner_up() -> None:
    assert isolation_index([4.0, 1.0, 2.0, 8.0, 8.0]) == (pytest.approx(np.log(2.0)), 1)
    assert isolation_index([3.0, 3.0, 5.0, 6.0, 7.0])[0] == pytest.approx(0.0)  # two small ones: no isolation


def test_an_isolated_trigger_is_flagged_with_its_class_and_company_is_not() -> None:
    alone = isolated_trigger([_nc([3.0, 0.6, 2.9, 4.0, 5.0, 3.5])])
    company = isolated_trigger([_nc([1.4, 1.4, 3.0, 4.0, 5.0, 3.5])])
    assert alone is not None and alone.key == KEY and alone.flagged and alone.target_classes == [1]
    assert 1 in alone.triggers
    assert company is not None and not company.flagged and company.target_classes == []
    assert isolated_trigger([_nc([1.0, 3.0, 3.0])]) is None  # too few classes for a runner-up to mean much
    assert isolated_trigger([]) is None


def test_a_scan_names_the_isolated_target_and_a_clean_model_passes(zoo: Zoo) -> None:
    data = load_npz(zoo.clean_npz)
    quick = ScanConfig(params={"mmbd.v2": {"steps": 20}})
    backdoored = scan_model(open_model(zoo.backdoored_model), data, quick)
    clean = scan_model(open_model(zoo.clean_model), data, quick)
    found = {r.key: r for r in backdoored.results}
    assert found[KEY].evidence["smallest_class"] == ATTACK.target
    assert ATTACK.target in found["neural_cleanse.v2"].triggers  # its trigger is kept for the report and files
    assert backdoored.backdoor_detected and ATTACK.target in backdoored.target_classes
    assert not next(r for r in clean.results if r.key == KEY).flagged
