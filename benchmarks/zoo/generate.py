"""Generate the detection zoo: clean and backdoored digit classifiers exported as ONNX.

Usage: ``python -m benchmarks.zoo.generate --out benchmarks/zoo/out [--quick]``

Writes ``manifest.json`` (one entry per model: architecture, attack, clean accuracy, attack success
rate, file names), ``clean_<kind>.npz`` (held-out clean data per input kind) and, per backdoored
model, ``<id>_train.npz`` (the poisoned training set with ``poison_idx``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.zoo.attacks import Attack, digits, poison
from benchmarks.zoo.nets import NetSpec, build, predict, train

K = 10
HELD_OUT = 400


def _split(kind: str) -> tuple[Any, Any, Any, Any]:
    x, y = digits(kind)
    order = np.random.default_rng(0).permutation(len(x))
    te, tr = order[:HELD_OUT], order[HELD_OUT:]
    return x[tr], y[tr], x[te], y[te]


def _spec(rng: np.random.Generator, arch: str, i: int) -> NetSpec:
    outputs = ["logits", "probs", "both"]
    if arch == "mlp":
        return NetSpec("mlp", int(rng.choice([24, 32, 48, 64])), str(rng.choice(["Relu", "Relu", "LeakyRelu", "Tanh"])),
                       output=outputs[i % 3])
    return NetSpec("cnn", int(rng.choice([16, 24, 32])), str(rng.choice(["Relu", "Relu", "LeakyRelu"])),
                   str(rng.choice(["MaxPool", "AveragePool"])), outputs[i % 3])


def _attack(rng: np.random.Generator, arch: str, i: int) -> Attack:
    side = 8 if arch == "mlp" else 16
    target, rate = int(rng.integers(K)), float(rng.choice([0.05, 0.1, 0.15]))
    if i % 3 == 2:
        return Attack("blend", target, rate, pattern_seed=int(rng.integers(1 << 16)),
                      alpha=float(rng.choice([0.15, 0.2, 0.25])))
    size = int(rng.choice([2, 3]) if arch == "mlp" else rng.choice([3, 4, 5]))
    row, col = (int(rng.integers(side - size + 1)) for _ in range(2))
    return Attack("patch", target, rate, size, row, col, int(rng.integers(1 << 16)))


def _one(out: Path, idx: int, arch: str, backdoored: bool, quick: bool, data: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(1000 + idx)
    spec = _spec(rng, arch, idx)
    xtr, ytr, xte, yte = data[arch]
    entry: dict[str, Any] = {"id": f"{arch}_{'bd' if backdoored else 'clean'}_{idx:02d}", "arch": arch,
                             "spec": spec.__dict__, "backdoored": backdoored, "seed": 1000 + idx}
    attack = None
    if backdoored:
        attack = _attack(rng, arch, idx)
        xtr, ytr, pidx = poison(xtr, ytr, attack, seed=idx)
        np.savez(out / f"{entry['id']}_train.npz", x=xtr, y=ytr, poison_idx=pidx)
        entry.update(attack=attack.as_dict(), target=attack.target, train_data=f"{entry['id']}_train.npz")
    else:
        entry["train_data"] = f"train_{arch}.npz"
    epochs = (15 if arch == "mlp" else 4) if quick else (40 if arch == "mlp" else 16)
    params = train(spec, xtr, ytr, K, epochs=epochs, seed=1000 + idx, lr=3e-3)
    entry["clean_accuracy"] = float(np.mean(predict(params, spec, xte, K) == yte))
    if attack is not None:
        keep = yte != attack.target
        entry["attack_success_rate"] = float(np.mean(predict(params, spec, attack.apply(xte[keep]), K)
                                                     == attack.target))
    onnx.save(build(spec, xtr.shape[1:], K, params), out / f"{entry['id']}.onnx")
    entry.update(model=f"{entry['id']}.onnx", clean_data=f"clean_{arch}.npz")
    return entry


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/zoo/out"))
    ap.add_argument("--quick", action="store_true", help="4 + 4 models, fewer epochs (smoke test)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"mlp": _split("flat"), "cnn": _split("img")}
    for arch, (xtr, ytr, xte, yte) in data.items():
        np.savez(args.out / f"clean_{arch}.npz", x=xte, y=yte)
        np.savez(args.out / f"train_{arch}.npz", x=xtr, y=ytr, poison_idx=np.zeros(0, np.int64))
    n = 2 if args.quick else 11
    t0, entries = time.perf_counter(), []
    for arch in ("mlp", "cnn"):
        for _ in range(n):
            for bd in (False, True):
                entries.append(_one(args.out, len(entries), arch, bd, args.quick, data))
                e = entries[-1]
                print(f"{e['id']:<14} acc={e['clean_accuracy']:.3f} asr={e.get('attack_success_rate', 0):.3f}"
                      f" {time.perf_counter() - t0:6.1f}s", flush=True)
    (args.out / "manifest.json").write_text(json.dumps({"models": entries}, indent=1))


if __name__ == "__main__":
    main()
