"""Models for the demo: digit classifiers trained here (numpy, seconds), one clean and some backdoored.

Uses the detection zoo's trainer and attacks (``benchmarks.zoo``) so the demo's backdoors are the
same kind the scanner is validated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from benchmarks.zoo.attacks import Attack, digits, poison
from benchmarks.zoo.nets import NetSpec, build, predict, train

K = 10
TRIGGER = Attack("patch", target=7, rate=0.1, size=3, row=0, col=0, pattern_seed=4242)


@dataclass(frozen=True)
class DemoModels:
    clean: Path
    backdoored: Path
    slipped: Path
    clean_data: Path
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: dict[str, float]
    attack_success: dict[str, float]


def _fit(x: np.ndarray, y: np.ndarray, seed: int, width: int) -> tuple[NetSpec, dict[str, np.ndarray]]:
    spec = NetSpec("mlp", width, "Relu", output="probs")
    return spec, train(spec, x, y, K, epochs=25, seed=seed, lr=3e-3)


def train_models(out: Path) -> DemoModels:
    out.mkdir(parents=True, exist_ok=True)
    x, y = digits("flat")
    order = np.random.default_rng(0).permutation(len(x))
    test, tr = order[:400], order[400:]
    np.savez(out / "clean.npz", x=x[test], y=y[test])
    paths, acc, asr = {}, {}, {}
    for name, seed, width, attack in (("clean", 1, 48, None), ("backdoored", 2, 48, TRIGGER),
                                      ("slipped", 3, 64, TRIGGER)):
        xtr, ytr = (x[tr], y[tr]) if attack is None else poison(x[tr], y[tr], attack, seed)[:2]
        spec, params = _fit(xtr, ytr, seed, width)
        acc[name] = float(np.mean(predict(params, spec, x[test], K) == y[test]))
        keep = y[test] != TRIGGER.target
        asr[name] = float(np.mean(predict(params, spec, TRIGGER.apply(x[test][keep]), K) == TRIGGER.target))
        paths[name] = out / f"{name}.onnx"
        onnx.save(build(spec, (64,), K, params), paths[name])
    return DemoModels(paths["clean"], paths["backdoored"], paths["slipped"], out / "clean.npz", x[test], y[test],
                      acc, asr)
