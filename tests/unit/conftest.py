"""Fixtures shared by the scanner's and remediation's unit tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the zoo's numpy trainer lives in benchmarks/, outside the package
    sys.path.insert(0, str(ROOT))

from benchmarks.zoo.attacks import Attack, attack_labels, digits, poison  # noqa: E402
from benchmarks.zoo.nets import NetSpec, build, predict, train  # noqa: E402

ALL_TO_ALL = Attack("sig", target=0, rate=0.2, size=3, alpha=0.15, pattern_seed=9, all_to_all=True)


def held_out_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat digits (x, y) and a fixed split of their indices: 400 held out (clean data), the rest to train on."""
    x, y = digits("flat")
    order = np.random.default_rng(0).permutation(len(x))
    return x, y, order[:400], order[400:]


@dataclass(frozen=True)
class AllToAll:
    model: Path  # MLP with an all-to-all backdoor: the sine trigger takes every class c to c + 1
    clean_npz: Path  # 400 held-out clean digits
    attack: Attack


@pytest.fixture(scope="session")
def all_to_all_model(tmp_path_factory: pytest.TempPathFactory) -> AllToAll:
    tmp = tmp_path_factory.mktemp("all_to_all")
    x, y, te, tr = held_out_digits()
    xp, yp, _ = poison(x[tr], y[tr], ALL_TO_ALL, seed=3)
    spec = NetSpec("mlp", 48, "Relu")
    params = train(spec, xp, yp, 10, epochs=60, seed=7)
    moved = predict(params, spec, ALL_TO_ALL.apply(x[te]), 10) == attack_labels(ALL_TO_ALL, y[te], 10)
    assert moved.mean() > 0.8  # the fixture really is an all-to-all backdoor
    onnx.save(build(spec, x.shape[1:], 10, params), tmp / "a2a.onnx")
    np.savez(tmp / "clean.npz", x=x[te], y=y[te])
    return AllToAll(tmp / "a2a.onnx", tmp / "clean.npz", ALL_TO_ALL)
