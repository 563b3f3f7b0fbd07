"""Dormant-feature response: frames on a blank border found, clean models and busy inputs left alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from benchmarks.zoo.attacks import Attack, poison
from benchmarks.zoo.nets import NetSpec, build, train
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.adapters.reports import write_html
from services.scanner.domain.detectors import create
from services.scanner.domain.detectors.base import DetectionResult
from services.scanner.domain.detectors.dormant_features import dormant_groups
from services.scanner.domain.fusion import agreement
from services.scanner.domain.model import Dataset
from tests.unit.conftest import held_out_digits

pytestmark = pytest.mark.unit

KEY = "dormant_features.v1"
FRAME = Attack("frame", target=3, rate=0.1, size=1, row=7, col=0, pattern_seed=1)  # column 0 is blank in digits


def _frame_model(tmp_path: Path, arch: str, seed: int) -> Any:
    x, y, _, tr = held_out_digits()
    xp, yp, _ = poison(x[tr], y[tr], FRAME, seed=1)
    spec = NetSpec(arch, 32, "Relu")
    onnx.save(build(spec, xp.shape[1:], 10, train(spec, xp, yp, 10, epochs=30, seed=seed)), tmp_path / "m.onnx")
    return open_model(tmp_path / "m.onnx")


def _clean_digits() -> Dataset:
    x, y, te, _ = held_out_digits()
    return Dataset(x[te], y[te])


def test_a_frame_on_the_blank_border_is_pinned_on_its_target(tmp_path: Path) -> None:
    model = _frame_model(tmp_path, "mlp", seed=4)
    result = create(KEY).fit(model, _clean_digits()).result()
    assert result.evidence["ranking"][0] == FRAME.target and result.flagged and result.target_classes == [3]
    assert result.evidence["dormant_class_scores"][FRAME.target] == pytest.approx(result.score, abs=1e-3)
    assert result.evidence["dormant_features"] >= 8  # column 0, and most of column 7


@pytest.mark.parametrize(("arch", "seed"), [("mlp", 3), ("mlp3", 5)])
def test_below_its_own_bar_the_frames_target_still_ranks_first(tmp_path: Path, arch: str, seed: int) -> None:
    result = create(KEY).fit(_frame_model(tmp_path, arch, seed), _clean_digits()).result()
    assert result.evidence["ranking"][0] == FRAME.target
    clean_like = sorted(result.evidence["dormant_class_scores"])[-2]
    assert result.score > clean_like + 0.5  # the target stands apart from the runner-up


def test_a_clean_model_pushes_no_class_out_of_the_blank_border(zoo: Any) -> None:
    model = open_model(zoo.clean_model)
    result = create(KEY).fit(model, load_npz(zoo.clean_npz, model.input_shape)).result()
    assert not result.flagged and result.score < 3.0


def test_inputs_without_dormant_features_give_no_signal_and_say_why(zoo: Any) -> None:
    model = open_model(zoo.clean_model)
    data = load_npz(zoo.clean_npz, model.input_shape)
    noisy = np.clip(data.x + np.random.default_rng(0).uniform(0, 0.2, data.x.shape), 0, 1).astype(np.float32)
    result = create(KEY).fit(model, Dataset(noisy, data.y)).result()
    assert result.score == 0.0 and not result.flagged
    assert result.evidence["dormant_class_scores"] is None and "no dormant features" in result.evidence["note"]


def test_a_pixel_is_dormant_only_when_all_its_channels_are_and_is_stamped_on_all() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((50, 3, 6, 6), np.float32)
    x[:, :, 1:5, 1:5] = rng.uniform(0, 1, (50, 3, 4, 4))  # ink inside, a blank one-pixel border
    x[:, 2, 0, 0] = rng.uniform(0, 1, 50)  # the corner varies on its last channel only
    groups, stamp = dormant_groups(x, max_active=0.01, max_groups=256)
    pixels = sorted({int(f) % 36 for g in groups for f in g})
    border = sorted({r * 6 + c for r in range(6) for c in range(6) if r in (0, 5) or c in (0, 5)} - {0})
    assert pixels == border
    assert all(len(g) == 3 and len({int(f) % 36 for f in g}) == 1 for g in groups)  # one pixel, three channels
    assert float(stamp[6]) == pytest.approx(float(x.max()))  # blank at 0: stamped at the top of the range
    coarse, _ = dormant_groups(x, max_active=0.01, max_groups=4)
    assert len(coarse) == 4 and sorted(int(f) for g in coarse for f in g) == sorted(int(f) for g in groups for f in g)


def test_two_classes_are_scored_against_each_other_on_the_two_class_scale(tmp_path: Path) -> None:
    x, y, _, _ = held_out_digits()
    keep = np.isin(y, [4, 7])
    xs, ys = x[keep], (y[keep] == 7).astype(np.int64)
    frame = Attack("frame", target=1, rate=0.1, size=1, row=7, col=0, pattern_seed=1)
    xp, yp, _ = poison(xs[100:], ys[100:], frame, seed=1)
    spec, clean = NetSpec("mlp", 16, "Relu"), Dataset(xs[:100], ys[:100])
    scores = {}
    for name, (xt, yt) in {"backdoored": (xp, yp), "clean": (xs[100:], ys[100:])}.items():
        onnx.save(build(spec, xs.shape[1:], 2, train(spec, xt, yt, 2, epochs=30, seed=1)), tmp_path / f"{name}.onnx")
        result = create(KEY).fit(open_model(tmp_path / f"{name}.onnx"), clean).result()
        scores[name] = result.evidence["dormant_class_scores"]
        assert scores[name][1] == pytest.approx(-scores[name][0], abs=1e-3)
        assert result.evidence["note"].startswith("two classes")
    assert scores["backdoored"][frame.target] > 2.0 > 1.0 + max(abs(v) for v in scores["clean"])


def _r(key: str, name: str, scores: list[float]) -> DetectionResult:
    return DetectionResult(key, max(scores), 3.5, "clean", [], {name: scores}, [], 0.1)


def test_the_dormant_signal_stays_out_of_the_agreement() -> None:
    # not independent of Neural Cleanse on clean models (see fusion.py): it flags on its own bar only
    peak = [2.0 if c == 3 else 0.0 for c in range(10)]
    nc, mm = _r("nc", "class_scores", peak), _r("mm", "class_scores", peak)
    push = _r(KEY, "dormant_class_scores", [5.0 if c == 3 else 0.0 for c in range(10)])
    joined = agreement([nc, mm, push])
    assert joined is not None and not joined.flagged and joined.score == pytest.approx(4.0 / math.sqrt(2))
    assert joined.evidence["signals"] == ["nc/class_scores", "mm/class_scores"]


@pytest.mark.parametrize(("macs", "inputs", "groups"), [(None, 256, 11), (1e8, 18, 11), (1e9, 16, 8)])
def test_a_costly_model_is_measured_on_fewer_inputs_then_coarser_groups(
        tmp_path: Path, macs: float | None, inputs: int, groups: int) -> None:
    model = _frame_model(tmp_path, "mlp", seed=4)
    model.macs_per_sample = macs  # what the graph would say of a costly model; 2e10 MACs of budget
    result = create(KEY).fit(model, _clean_digits()).result()
    assert (result.evidence["inputs"], result.evidence["groups"]) == (inputs, groups)
    assert result.evidence["dormant_features"] == 11  # coarser groups still cover every dormant feature


def test_the_push_map_lights_the_frames_blank_column_and_the_html_page_shows_it(tmp_path: Path) -> None:
    model = _frame_model(tmp_path, "mlp", seed=4)
    result = create(KEY).fit(model, _clean_digits()).result()
    pictured = result.evidence["push_map"]
    assert pictured["class"] == FRAME.target and pictured["shape"] == [64]
    values = np.asarray(pictured["values"]).reshape(8, 8)
    assert values[:, 0].sum() > 0.9 * values.sum() > 0  # the frame's blank column 0, not the rest of the border
    page = tmp_path / "r.html"
    write_html({"model": "m.onnx", "backdoor_detected": True, "confidence": 1.0, "target_classes": [3],
                "block_deployment": True, "detectors": [result.to_dict()]}, page)
    text = page.read_text()
    assert f"dormant features pushing toward class {FRAME.target}" in text and "data:image/png;base64," in text
    assert "<th>push_map</th>" not in text  # pictured, not listed as numbers
