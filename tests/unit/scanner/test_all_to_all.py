"""All-to-all backdoors (every class c taken to c + 1): no class is an easy target, but one small universal
trigger moves every class; the untargeted search finds it and the all-to-all check flags it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from services.scanner.domain.all_to_all import KEY, UNIVERSAL, all_to_all
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.detectors.neural_cleanse import all_to_all_index
from services.scanner.entrypoints.cli import register

from ..conftest import AllToAll
from .conftest import Zoo

pytestmark = pytest.mark.unit


def _scan(model: Path, clean: Path, report: Path) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["scan", str(model), "--clean-data", str(clean), "--report", str(report),
                                   "--html", str(report.with_suffix(".html"))])
    return res.exit_code, res.output


def test_an_all_to_all_backdoor_is_caught_by_the_universal_trigger(all_to_all_model: AllToAll, tmp_path: Path) -> None:
    code, output = _scan(all_to_all_model.model, all_to_all_model.clean_npz, tmp_path / "r.json")
    assert code == 1, output
    assert "all_to_all.v1" in output and "works from every class" in output
    html = (tmp_path / "r.html").read_text()
    assert "universal (any class)" in html  # the universal trigger is drawn in the report


def test_a_clean_model_stays_under_the_all_to_all_bar(zoo: Zoo, tmp_path: Path) -> None:
    code, output = _scan(zoo.clean_model, zoo.clean_npz, tmp_path / "r.json")
    assert code == 0, output
    line = next(ln for ln in output.splitlines() if "all_to_all.v1" in ln)
    assert "clean" in line


def _nc_result(index: float | None) -> DetectionResult:
    evidence = {} if index is None else {"all_to_all_index": index, "untargeted_l1": 2.0}
    triggers = {} if index is None else {UNIVERSAL: (np.ones((8, 8), np.float32), np.zeros((64,), np.float32))}
    return DetectionResult("neural_cleanse.v2", 1.0, 4.3, "clean", [], evidence, [], 0.1, triggers)


def test_the_check_reads_neural_cleanse_and_names_no_single_target() -> None:
    assert all_to_all([_nc_result(None)]) is None  # two classes or search off: nothing to say
    low, high = all_to_all([_nc_result(-0.6)]), all_to_all([_nc_result(1.2)])
    assert low is not None and high is not None and low.key == high.key == KEY
    assert not low.flagged and "note" not in low.evidence and not low.triggers
    assert high.flagged and high.target_classes == [] and UNIVERSAL in high.triggers
    assert all_to_all([_nc_result(1.2)], threshold=1.5) is not None and not all_to_all(
        [_nc_result(1.2)], threshold=1.5).flagged  # type: ignore[union-attr]


def test_the_index_compares_the_universal_trigger_with_the_median_class_trigger() -> None:
    l1 = np.array([4.0, 8.0, 8.0, 8.0, 16.0])
    assert all_to_all_index(l1, 8.0) == pytest.approx(0.0)
    assert all_to_all_index(l1, 2.0) == pytest.approx(np.log(4.0))
    assert all_to_all_index(l1, 32.0) < 0


def test_the_index_counts_masks_from_one_feature_and_reached_classes_only() -> None:
    # masks under one feature are ties: a universal edit of a quarter pixel is no smaller than a per-class one
    assert all_to_all_index(np.array([0.6, 0.6, 0.7, 0.9]), 0.25) == pytest.approx(0.0)
    # half the classes out of reach (their size is the failure penalty, not a mask): the median of the others
    l1 = np.array([0.5, 0.8, 1.1, 0.2, 110.0, 104.0, 113.0, 110.0])
    reached = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert all_to_all_index(l1, 0.95, reached) == pytest.approx(0.0)
    assert all_to_all_index(l1, 0.95) > 3.0  # what a clean naive Bayes model scored without it
    # most classes out of reach: nothing better than all of them
    assert all_to_all_index(l1, 0.95, np.array([1.0, 0, 0, 0, 0, 0, 0, 0])) == pytest.approx(all_to_all_index(l1, 0.95))


def test_the_sarif_finding_of_an_all_to_all_model_says_what_was_found(tmp_path: Path) -> None:
    from services.scanner.adapters.reports import write_sarif

    report = {"block_deployment": True, "backdoor_detected": True, "confidence": 0.99, "detectors": [
        {"key": KEY, "verdict": "suspicious", "target_classes": [], "score": 1.8, "threshold": 0.5,
         "evidence": {"note": "a trigger that works from every class"}}]}
    write_sarif(report, tmp_path / "r.sarif", "m.onnx")
    text = (tmp_path / "r.sarif").read_text()
    assert "all_to_all.v1 flags the model: a trigger that works from every class" in text


def test_the_universal_trigger_of_a_flagged_model_reaches_the_telemetry_trigger_library(tmp_path: Path) -> None:
    from services.scanner.adapters.reports import write_triggers
    from services.scanner.domain.policy import Verdict
    from services.telemetry.client.trigger_files import load_trigger_library

    flat = {UNIVERSAL: (np.ones(64, np.float32), np.zeros(64, np.float32))}  # a flat model's trigger
    flagged, passed = (all_to_all([replace(_nc_result(index), triggers=flat)]) for index in (1.2, -0.6))
    assert flagged is not None and passed is not None
    for result, expected in ((flagged, 1), (passed, 0)):
        verdict = Verdict(result.flagged, 0.9, [], result.flagged, [result])
        assert write_triggers(verdict, tmp_path / f"{expected}.triggers.npz") == expected
    with np.load(tmp_path / "1.triggers.npz") as npz:
        assert set(npz.files) == {"mask_universal", "pattern_universal"}
    library = load_trigger_library([tmp_path / "1.triggers.npz"])
    assert len(library) == 1
    stamped = np.zeros((1, 64), np.float32)  # the test trigger: the whole mask, pattern all zeros
    assert library.match(stamped) != [""] and library.match(stamped + 1.0) == [""]
