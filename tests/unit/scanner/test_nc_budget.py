"""Neural Cleanse's search budget is work, not seconds, and its memory stays bounded for many classes."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors import create
from services.scanner.domain.detectors.neural_cleanse import NeuralCleanse, persistence, reverse_triggers
from services.scanner.domain.detectors.reversal import search_shape, step_cap
from services.scanner.domain.model import Cotangent, Dataset, FloatArray
from services.scanner.service_layer.scan import ScanConfig, scan_model

from .conftest import Zoo

pytestmark = pytest.mark.unit
K, SIDE, N = 50, 6, 200


class LinearModel:
    """A many-class linear classifier on 1 x 6 x 6 inputs with exact gradients; class 7 has a shortcut."""

    input_shape = (1, SIDE, SIDE)
    num_classes = K
    exact_gradients = True

    def __init__(self, macs: int | None = None) -> None:
        rng = np.random.default_rng(0)
        self.w = rng.normal(0, 1, (SIDE * SIDE, K)).astype(np.float32)
        # four pixels of the top row switch class 7 on: a planted trigger of about one pixel's edit (a much
        # stronger one, under one pixel, would be a tie for Neural Cleanse's mask floor)
        self.w[:4, 7] += 3.0
        if macs is not None:
            self.macs_per_sample = macs

    def predict(self, x: FloatArray) -> FloatArray:
        z = x.reshape(len(x), -1) @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out: FloatArray = e / e.sum(axis=1, keepdims=True)
        return out

    def layers(self) -> Sequence[str]:
        return ["logits"]

    def activations(self, x: FloatArray, layer: str) -> FloatArray:
        out: FloatArray = x.reshape(len(x), -1) @ self.w
        return out

    def value_and_grad(self, x: FloatArray, cotangent: Cotangent) -> tuple[FloatArray, FloatArray]:
        z = (x.reshape(len(x), -1) @ self.w).astype(np.float32)
        return z, (cotangent(z) @ self.w.T).reshape(x.shape).astype(np.float32)


def _data() -> Dataset:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (N, 1, SIDE, SIDE)).astype(np.float32)
    return Dataset(x, np.argmax(LinearModel().predict(x), axis=1).astype(np.int64))


def _triggers() -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(2)
    return (rng.uniform(0, 1, (K, SIDE, SIDE)).astype(np.float32),
            rng.uniform(0, 1, (K, 1, SIDE, SIDE)).astype(np.float32))


def test_persistence_in_small_chunks_matches_one_chunk_and_keeps_memory_bounded() -> None:
    model, data, (masks, patterns) = LinearModel(), _data(), _triggers()
    whole = persistence(model, data, masks, patterns, 0.5, np.random.default_rng(3), chunk_bytes=2**30)
    tracemalloc.start()
    chunked = persistence(model, data, masks, patterns, 0.5, np.random.default_rng(3), chunk_bytes=2**16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full = K * N * SIDE * SIDE * 4  # one [K, N, *input] float32 array, which the old code built several of
    assert chunked.shape == (K,) and np.allclose(chunked, whole)
    assert peak < full / 2


def test_the_trigger_search_over_fifty_classes_in_chunks_matches_one_chunk_and_finds_the_shortcut() -> None:
    model, data = LinearModel(), _data()
    cfg = NeuralCleanse(steps=150, batch_size=8, max_samples=64, patience=None, budget_macs=None)
    runs = []
    for macs in (None, 10**6):  # a costly model: its rows go two classes at a time
        info: dict[str, Any] = {}
        runs.append(reverse_triggers(LinearModel(macs), data.x[:64], cfg, np.random.default_rng(0), info))
        assert info["steps"] == 150 and info["stopped"] == "step_cap"
    assert np.allclose(runs[0][2], runs[1][2], rtol=1e-4)
    assert int(np.argmin(runs[0][2])) == 7
    result = create("neural_cleanse.v2", steps=150, batch_size=8, max_samples=64).fit(model, data).result()
    assert result.flagged and result.target_classes[0] == 7 and len(result.evidence["persistence"]) == K


def test_the_step_cap_comes_from_the_models_cost_not_the_clock() -> None:
    assert step_cap(LinearModel(), 320, 600, 4.5e10) == 600  # cost unknown: the configured steps
    assert step_cap(LinearModel(macs=10**5), 320, 600, 4.5e10) == 468  # 4.5e10 / (1e5 * 3 passes * 320)
    assert step_cap(LinearModel(macs=10**9), 320, 600, 4.5e10) == 200  # never below the floor


def test_a_costly_model_gets_smaller_batches_before_fewer_steps() -> None:
    budget = 1.8e11
    assert search_shape(LinearModel(macs=10**5), 10, 32, 600, budget) == (32, 600)  # cheap: as configured
    # 1.8e11 / (1e6 * 3 * 10 rows): 32 per class would get 187 steps, 16 get 375, 8 get 600
    assert search_shape(LinearModel(macs=10**6), 10, 32, 600, budget) == (8, 600)
    assert search_shape(LinearModel(macs=2 * 10**6), 10, 32, 600, budget) == (4, 600)  # down to 4 inputs
    assert search_shape(LinearModel(macs=4 * 10**6), 10, 32, 600, budget) == (4, 375)  # then the steps give
    assert search_shape(LinearModel(macs=10**9), 10, 32, 600, budget) == (4, 200)  # never below the floors
    assert search_shape(LinearModel(macs=10**9), 10, 2, 600, budget) == (2, 200)  # a smaller batch is kept
    # MM-BD's random starts per class halve the same way, with floors of its own
    assert search_shape(LinearModel(macs=10**9), 10, 16, 200, 2.4e11, 8, 50) == (8, 50)
    assert search_shape(LinearModel(), 10, 32, 600, budget) == (32, 600)  # cost unknown


def test_a_scan_reports_its_search_and_is_the_same_when_repeated(zoo: Zoo) -> None:
    model, clean = open_model(zoo.backdoored_model), load_npz(zoo.clean_npz)
    runs = [create("neural_cleanse.v2", steps=120).fit(model, clean).result() for _ in range(2)]
    assert runs[0].to_dict() | {"seconds": 0} == runs[1].to_dict() | {"seconds": 0}
    assert runs[0].evidence["search"]["stopped"] in ("converged", "step_cap")
    assert model.macs_per_sample > 0 and model.gradient_passes == 3


def test_the_wall_clock_guard_is_only_a_safety_net_and_says_when_it_fired(zoo: Zoo) -> None:
    model, clean = open_model(zoo.backdoored_model), load_npz(zoo.clean_npz)
    result = create("neural_cleanse.v2", steps=200, max_seconds=1e-6).fit(model, clean).result()
    assert result.evidence["search"] == {"steps": 50, "step_cap": 200, "batch_size": 32,
                                          "stopped": "time_guard", "box": "data range"}


def test_a_search_cut_short_by_the_budget_says_so_and_a_larger_budget_lifts_the_cut(zoo: Zoo) -> None:
    model, data = open_model(zoo.clean_model), load_npz(zoo.clean_npz)
    quick = {"mmbd.v2": {"steps": 10, "starts": 2}}
    starved = scan_model(model, data, ScanConfig(params=quick, budget_scale=1e-5))
    nc = next(r for r in starved.results if r.key == "neural_cleanse.v2")
    assert nc.evidence["search"]["batch_size"] < 32
    dormant = next(r for r in starved.results if r.key == "dormant_features.v1")
    assert dormant.evidence["inputs"] == 16  # the dormant-feature check's budget is scaled too
    assert any("cut the trigger search" in n and "--budget" in n for n in starved.notes)
    full = scan_model(model, data, ScanConfig(params=quick))
    assert not any("cut the trigger search" in n for n in full.notes)
    assert next(r for r in full.results if r.key == "dormant_features.v1").evidence["inputs"] == 256
    with pytest.raises(ValueError, match="budget_scale"):
        scan_model(model, data, ScanConfig(params=quick, budget_scale=0.0))



def test_a_costly_model_gets_fewer_margin_starts_before_fewer_ascent_steps() -> None:
    data = _data()
    runs = {m: create("mmbd.v2", steps=60).fit(LinearModel(macs=m), data).result().evidence for m in (10, 10**9)}
    assert (runs[10]["starts"], runs[10]["steps"]) == (16, 60)  # cheap: as configured
    assert (runs[10**9]["starts"], runs[10**9]["steps"]) == (8, 50)  # starts halve, then the steps give
