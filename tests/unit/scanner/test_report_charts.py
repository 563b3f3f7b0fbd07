"""The HTML report draws each detector's per-class index as bars against its bar."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.scanner.adapters.reports import class_scores_png, write_html

pytestmark = pytest.mark.unit

RED = (200, 30, 30)


def _red_columns(png: bytes, bar: int = 24) -> list[int]:
    """Classes whose bar holds red pixels away from the dashed threshold line."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    red = (img == RED).all(axis=2)
    rows = red.sum(axis=1)
    line = int(np.argmax(rows))  # the dashed line is the reddest row
    red[max(0, line - 1):line + 2] = False
    return [c for c in range((img.shape[1] - 8) // bar) if red[:, 4 + c * bar:4 + (c + 1) * bar].any()]


def test_only_the_classes_over_the_bar_are_drawn_red() -> None:
    png = class_scores_png([0.2, -1.0, 5.1, 3.0, 4.0], threshold=3.3)
    img = Image.open(io.BytesIO(png))
    assert img.size == (5 * 24 + 8, 120)
    assert _red_columns(png) == [2, 4]
    assert _red_columns(class_scores_png([0.0, 0.0, 0.0], threshold=3.3)) == []  # flat: nothing stands out


def test_the_page_charts_every_detector_that_scores_classes(tmp_path: Path) -> None:
    detectors = [{"key": "neural_cleanse.v2", "verdict": "clean", "score": 2.0, "threshold": 4.3,
                  "target_classes": [], "seconds": 1.0, "evidence": {"class_scores": [2.0, -1.0, 0.5]}},
                 {"key": "all_to_all.v1", "verdict": "clean", "score": -0.5, "threshold": 0.5,
                  "target_classes": [], "seconds": 0.0, "evidence": {"all_to_all_index": -0.5}}]
    page = tmp_path / "r.html"
    write_html({"model": "m.onnx", "backdoor_detected": False, "confidence": 0.1, "target_classes": [],
                "block_deployment": False, "detectors": detectors}, page)
    text = page.read_text()
    assert text.count("<figcaption>per-class index, classes 0-2 left to right") == 1  # all-to-all scores no class
