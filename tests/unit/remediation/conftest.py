"""Session fixtures: a tiny MLP with a planted BadNets patch (trained in seconds) and an untrained CNN."""

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

from benchmarks.zoo.attacks import Attack, digits, poison  # noqa: E402
from benchmarks.zoo.nets import NetSpec, build, train  # noqa: E402
from tests.unit.conftest import held_out_digits  # noqa: E402

ATTACK = Attack("patch", target=7, rate=0.1, size=3, row=0, col=5, pattern_seed=11)
Arr = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Planted:
    model: Path  # backdoored MLP, softmax output
    clean_npz: Path  # held-out clean digits (never trained on)
    trigger_npz: Path  # the true trigger as mask / pattern / target
    dir: Path


def patch_trigger(attack: Attack, shape: tuple[int, ...]) -> tuple[Arr, Arr]:
    """The attack's patch as (mask, pattern) for inputs of ``shape`` ([64] or [1, 16, 16])."""
    mask = np.zeros(shape, np.float32)
    (mask.reshape(8, 8) if len(shape) == 1 else mask[0])[
        attack.row:attack.row + attack.size, attack.col:attack.col + attack.size] = 1.0
    return mask, attack.apply(np.zeros((1, *shape), np.float32))[0]


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    d = tmp_path_factory.mktemp("remediation")
    x, y, te, tr = held_out_digits()
    xp, yp, _ = poison(x[tr], y[tr], ATTACK, seed=0)
    spec = NetSpec("mlp", 32, output="probs")
    params = train(spec, xp, yp, 10, epochs=20, seed=3)
    onnx.save(build(spec, (64,), 10, params), d / "bd.onnx")
    np.savez(d / "clean.npz", x=x[te], y=y[te])
    mask, pattern = patch_trigger(ATTACK, (64,))
    np.savez(d / "trigger.npz", mask=mask, pattern=pattern, target=np.int64(ATTACK.target))
    return Planted(d / "bd.onnx", d / "clean.npz", d / "trigger.npz", d)


@pytest.fixture(scope="session")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained CNN (Conv-Relu-MaxPool x2, Flatten, MatMul) and 120 clean images."""
    d = tmp_path_factory.mktemp("cnn")
    onnx.save(build(NetSpec("cnn", 16), (1, 16, 16), 10, seed=1), d / "cnn.onnx")
    x, y = digits("img")
    np.savez(d / "clean.npz", x=x[:120], y=y[:120])
    return d / "cnn.onnx", d / "clean.npz"
