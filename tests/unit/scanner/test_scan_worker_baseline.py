"""The scan worker's baseline (the latest earlier clean version's report) when the classes changed."""

from __future__ import annotations

from pathlib import Path

import orjson

from services.scanner.bootstrap import onnx_scanner
from services.scanner.config import ScannerSettings
from tests.unit.scanner.conftest import Zoo


def test_an_earlier_report_for_another_class_count_is_set_aside_and_the_scan_still_runs(zoo: Zoo,
                                                                                      tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"  # a version with 3 classes; this one has 10
    earlier.write_bytes(orjson.dumps({"detectors": [{"key": "neural_cleanse.v2",
                                                     "evidence": {"l1_norms": [3.0, 4.0, 5.0]}}]}))
    scan = onnx_scanner(ScannerSettings(detectors=["neural_cleanse"], reports_dir=tmp_path))
    outcome = scan(zoo.backdoored_model, zoo.clean_npz, tmp_path / "report", earlier)
    assert outcome.error is None
    assert outcome.backdoor_detected and outcome.target_classes[:1] == [7]
    assert any("not used as the baseline" in n and "3 classes" in n for n in outcome.notes)
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["baseline_report"] is None
