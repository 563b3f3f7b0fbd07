"""The scanner's reversed triggers feed the telemetry client's trigger library (files, no broker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.demo.models import TRIGGER, DemoModels, train_models
from services.scanner.bootstrap import onnx_scanner
from services.scanner.config import ScannerSettings
from services.telemetry.client.trigger_files import load_trigger_library


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    return train_models(tmp_path_factory.mktemp("models"))


def test_a_scanned_backdoor_becomes_a_pattern_that_marks_triggered_inputs_only(models: DemoModels,
                                                                             tmp_path: Path) -> None:
    outcome = onnx_scanner(ScannerSettings())(models.backdoored, models.clean_data, tmp_path / "scan", None)
    assert outcome.backdoor_detected and outcome.target_classes[0] == TRIGGER.target
    library = load_trigger_library([tmp_path / "scan.triggers.npz"], tolerance=0.25)
    assert len(library) >= 1
    clean = models.x_test[models.y_test != TRIGGER.target]
    marked_triggered = np.mean([m != "" for m in library.match(TRIGGER.apply(clean))])
    marked_clean = np.mean([m != "" for m in library.match(clean)])
    assert marked_triggered >= 0.5 and marked_clean <= 0.05, (marked_triggered, marked_clean)


def test_a_file_that_is_not_a_trigger_file_is_refused_by_name(tmp_path: Path) -> None:
    bogus = tmp_path / "x.triggers.npz"
    bogus.write_bytes(b"\x80\x04 not an npz")
    with pytest.raises(ValueError, match=r"x\.triggers\.npz"):
        load_trigger_library([bogus])
