"""Session fixtures: tiny digit classifiers (clean and with a planted trigger) trained in seconds."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # the zoo's numpy trainer lives in benchmarks/, outside the package
    sys.path.insert(0, str(ROOT))

from benchmarks.zoo.attacks import Attack, poison  # noqa: E402
from benchmarks.zoo.nets import NetSpec, build, train  # noqa: E402
from tests.unit.conftest import held_out_digits  # noqa: E402

ATTACK = Attack("patch", target=7, rate=0.1, size=3, row=0, col=5, pattern_seed=11)
BLEND = Attack("blend", target=2, rate=0.1, alpha=0.2, pattern_seed=5)


@dataclass(frozen=True)
class Zoo:
    clean_model: Path
    backdoored_model: Path
    clean_npz: Path
    train_npz: Path  # poisoned training set of the backdoored model
    clean_train_npz: Path
    blended_model: Path  # whole-image blended trigger, target BLEND.target
    blend_train_npz: Path
    blend_idx: np.ndarray[Any, Any]
    poison_idx: np.ndarray[Any, Any]
    dir: Path


def _export(spec: NetSpec, x: Any, y: Any, path: Path, seed: int) -> Path:
    params = train(spec, x, y, 10, epochs=30, seed=seed)
    onnx.save(build(spec, x.shape[1:], 10, params), path)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    d = tmp_path_factory.mktemp("zoo")
    x, y, te, tr = held_out_digits()
    xp, yp, pidx = poison(x[tr], y[tr], ATTACK, seed=1)
    np.savez(d / "clean.npz", x=x[te], y=y[te])
    np.savez(d / "train.npz", x=xp, y=yp)
    np.savez(d / "clean_train.npz", x=x[tr], y=y[tr])
    xb, yb, bidx = poison(x[tr], y[tr], BLEND, seed=2)
    np.savez(d / "blend_train.npz", x=xb, y=yb)
    spec = NetSpec("mlp", 32, "Relu", output="both")
    return Zoo(_export(NetSpec("mlp", 32, "Relu"), x[tr], y[tr], d / "clean.onnx", seed=3),
               _export(spec, xp, yp, d / "backdoored.onnx", seed=4),
               d / "clean.npz", d / "train.npz", d / "clean_train.npz",
               _export(NetSpec("mlp", 32, "Relu", output="probs"), xb, yb, d / "blended.onnx", seed=5),
               d / "blend_train.npz", bidx, pidx, d)
