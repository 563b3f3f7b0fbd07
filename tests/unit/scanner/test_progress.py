"""Detectors report the steps of their long loops to a listener, when one is set (the CLI's bar)."""

from __future__ import annotations

import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import create
from services.scanner.domain.progress import listening, report

from .conftest import Zoo

pytestmark = pytest.mark.unit


def test_steps_are_reported_only_while_someone_listens() -> None:
    heard: list[tuple[str, int, int]] = []
    report("search", 10, 20)  # nobody listens: nothing happens
    with listening(lambda *a: heard.append(a)):
        for done in range(1, 21):
            report("search", done, 20)
    report("search", 20, 20)
    assert heard == [("search", 10, 20), ("search", 20, 20)]


def test_the_trigger_searches_and_the_margin_ascent_report_their_steps(zoo: Zoo) -> None:
    model, data = open_model(zoo.clean_model), load_npz(zoo.clean_npz)
    heard: list[tuple[str, int, int]] = []
    with listening(lambda *a: heard.append(a)):
        create("neural_cleanse.v2", steps=30).fit(model, data)
        create("mmbd.v2", steps=20, starts=2).fit(model, data)
    stages = {stage for stage, _, _ in heard}
    assert stages == {"trigger search", "universal trigger", "margin ascent"}
    assert ("trigger search", 30, 30) in heard and ("margin ascent", 20, 20) in heard
