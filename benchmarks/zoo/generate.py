"""Generate the detection zoo: clean and backdoored digit classifiers exported as ONNX.

Usage: ``python -m benchmarks.zoo.generate --out benchmarks/zoo/out [--quick]``
       ``python -m benchmarks.zoo.generate --flavor holdout --out benchmarks/zoo/holdout``

The ``holdout`` flavor is for checking that detector changes generalise: architectures (``mlp3``: three
hidden layers as MatMul + Add; ``cnn3``: strided convolutions, BatchNormalization, global average
pooling) and trigger kinds (``sig``, ``frame``, ``dispersed``, ``warp``) that the main zoo does not
have, other seeds. Do not tune on it; report it. The ``tact`` flavor holds source-specific backdoors
(patch and blend, trigger works from one class only; see :mod:`.attacks`) on the main architectures.
The ``clean`` flavor holds only clean models of the main architectures, fresh seeds, to measure false
alarms on more models than the other zoos hold. The ``binary`` flavor holds two-class models (a random
pair of digits per model, each with its own ``<id>_clean.npz``), clean and backdoored; ``binary2`` the same
with fresh seeds, to check the two-class scale measured on ``binary``; ``binary3`` to ``binary5`` fresh seeds
again, to check the two-class agreement bar set on the first two. The ``alltoall`` flavor holds only
all-to-all backdoors (a trigger takes every class c to c + 1) with the holdout kinds on the four digit
architectures; its clean counterparts are the other zoos' clean models. The ``vit`` flavor holds small
vision transformers (4 x 4 patches, one self-attention block with LayerNormalization and a GELU MLP) on
16 x 16 digits, 6 clean and 6 backdoored with the holdout kinds, never tuned on. The ``large`` flavor holds small
residual nets (BatchNormalization, residual Add, strided convolution, global average pooling) on
3 x 32 x 32 colour digits, 8 clean and 8 backdoored with the holdout kinds: models about a hundred
times costlier per sample than the digit CNNs, to check the scan's budget and its detection at scale.
The ``few`` flavor (``few2``: fresh seeds) holds models of 3 to 5 digits, where a median over the classes is
taken over 3 to 5 values; the ``ovr`` flavor (``ovr2``) two-class models of one digit against all the others
(label 1 against label 0), a task whose classes are far from alike, as one-vs-rest tasks in the field are.

Writes ``manifest.json`` (one entry per model: architecture, attack, clean accuracy, attack success
rate, file names), ``clean_<kind>.npz`` (held-out clean data per input kind) and, per backdoored
model, ``<id>_train.npz`` (the poisoned training set with ``poison_idx``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.zoo.attacks import Attack, attack_labels, digits, poison
from benchmarks.zoo.nets import NetSpec, build, predict, train

K = 10
HELD_OUT = 400
Arr = np.ndarray[Any, Any]


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


SEED_BASE = {"holdout": 5000, "holdout2": 9000,  # holdout2: the same recipe, fresh models, for a last check
             "tact": 13000, "clean": 17000, "binary": 21000, "binary2": 21100, "binary3": 21200, "binary4": 21300,
             "binary5": 21400, "large": 25000, "alltoall": 29000,
             "vit": 33000, "few": 37000, "few2": 37100, "ovr": 41000, "ovr2": 41100}
SUBSET_FLAVORS = ("binary", "few", "ovr")
HOLDOUT_KINDS = ("sig", "frame", "dispersed", "warp", "patch", "blend")


def _holdout_spec(rng: np.random.Generator, arch: str, i: int) -> NetSpec:
    act = str(rng.choice(["Relu", "Tanh", "Sigmoid", "LeakyRelu"] if arch == "mlp3" else ["Relu", "LeakyRelu"]))
    width = int(rng.choice([48, 64, 96] if arch.startswith("mlp") else [24, 32]))
    return NetSpec(arch, width, act, output=["logits", "probs", "both"][i % 3])


def _holdout_attack(rng: np.random.Generator, arch: str, i: int) -> Attack:
    side, kind = (8 if arch.startswith("mlp") else 16), HOLDOUT_KINDS[i % len(HOLDOUT_KINDS)]
    target, rate, seed = int(rng.integers(K)), float(rng.choice([0.05, 0.1, 0.15])), int(rng.integers(1 << 16))
    if kind == "sig":
        return Attack(kind, target, rate, size=int(rng.choice([2, 3, 4])), pattern_seed=seed,
                      alpha=float(rng.choice([0.1, 0.15, 0.2])))
    if kind == "frame":
        return Attack(kind, target, rate, size=1, row=int(rng.integers(2)) * (side - 1),
                      col=int(rng.integers(2)) * (side - 1), pattern_seed=seed)
    if kind == "dispersed":
        return Attack(kind, target, rate, size=int(rng.choice([4, 6]) if side == 8 else rng.choice([8, 12])),
                      pattern_seed=seed)
    if kind == "warp":
        return Attack(kind, target, max(rate, 0.1), pattern_seed=seed, alpha=float(rng.choice([0.08, 0.12])))
    if kind == "blend":
        return Attack(kind, target, rate, pattern_seed=seed, alpha=float(rng.choice([0.1, 0.2])))
    size = int(rng.choice([2, 3]) if side == 8 else rng.choice([2, 3, 4]))
    row, col = (int(rng.integers(side - size + 1)) for _ in range(2))
    return Attack("patch", target, rate, size, row, col, seed)


def _vit_spec(rng: np.random.Generator, arch: str, i: int) -> NetSpec:
    return NetSpec(arch, int(rng.choice([16, 24, 32])), output=["logits", "probs", "both"][i % 3])


def _large_spec(rng: np.random.Generator, arch: str, i: int) -> NetSpec:
    return NetSpec(arch, int(rng.choice([8, 12])), str(rng.choice(["Relu", "LeakyRelu"])),
                   output=["logits", "probs", "both"][i % 3])


def _large_attack(rng: np.random.Generator, arch: str, i: int) -> Attack:
    """The holdout kinds on 32 x 32 colour digits, sized for the larger side."""
    side, kind = 32, HOLDOUT_KINDS[i % len(HOLDOUT_KINDS)]
    target, rate, seed = int(rng.integers(K)), float(rng.choice([0.05, 0.1])), int(rng.integers(1 << 16))
    if kind in ("sig", "blend", "warp"):
        alpha = {"sig": [0.1, 0.15], "blend": [0.1, 0.2], "warp": [0.06, 0.1]}[kind]
        return Attack(kind, target, max(rate, 0.1) if kind == "warp" else rate, size=int(rng.choice([3, 5])),
                      pattern_seed=seed, alpha=float(rng.choice(alpha)))
    if kind == "frame":
        return Attack(kind, target, rate, size=int(rng.choice([1, 2])), row=int(rng.integers(2)) * (side - 1),
                      col=int(rng.integers(2)) * (side - 1), pattern_seed=seed)
    if kind == "dispersed":
        return Attack(kind, target, rate, size=int(rng.choice([16, 24])), pattern_seed=seed)
    size = int(rng.choice([3, 4, 6]))
    row, col = (int(rng.integers(side - size + 1)) for _ in range(2))
    return Attack("patch", target, rate, size, row, col, seed)


def _all_to_all_attack(rng: np.random.Generator, arch: str, i: int) -> Attack:
    """The holdout kinds, every class c taken to c + 1, with more poison than one target needs."""
    attack = _holdout_attack(rng, arch, i)
    return replace(attack, rate=max(attack.rate, float(rng.choice([0.15, 0.2]))), all_to_all=True)


def _tact_attack(rng: np.random.Generator, arch: str, i: int) -> Attack:
    """A source-specific patch (two of three) or blend from a random source to another target."""
    target, source = (int(v) for v in rng.choice(K, size=2, replace=False))
    rate, seed = float(rng.choice([0.04, 0.06])), int(rng.integers(1 << 16))
    if i % 3 == 2:
        return Attack("blend", target, rate, pattern_seed=seed, alpha=float(rng.choice([0.15, 0.2])), source=source)
    side = 8 if arch.startswith("mlp") else 16
    size = int(rng.choice([2, 3]) if side == 8 else rng.choice([3, 4]))
    row, col = (int(rng.integers(side - size + 1)) for _ in range(2))
    return Attack("patch", target, rate, size, row, col, seed, source=source)


def _one(out: Path, idx: int, arch: str, backdoored: bool, quick: bool, data: dict[str, Any],
         holdout: str = "", n_backdoored: int = 0) -> dict[str, Any]:
    seed = (SEED_BASE.get(holdout, 5000) if holdout else 1000) + idx
    rng = np.random.default_rng(seed)
    spec = (_large_spec if holdout == "large" else _vit_spec if holdout == "vit" else _holdout_spec if holdout
            else _spec)(rng, arch, idx)
    xtr, ytr, xte, yte = data[arch[:3]]
    entry: dict[str, Any] = {"id": f"{arch}_{'bd' if backdoored else 'clean'}_{idx:02d}", "arch": arch,
                             "spec": spec.__dict__, "backdoored": backdoored, "seed": seed}
    attack = None
    if backdoored:
        attack = (_tact_attack(rng, arch, n_backdoored) if holdout == "tact" else
                  _all_to_all_attack(rng, arch, n_backdoored) if holdout == "alltoall" else
                  _large_attack(rng, arch, n_backdoored) if holdout == "large" else
                  _holdout_attack(rng, arch, n_backdoored) if holdout else _attack(rng, arch, idx))
        xtr, ytr, pidx = poison(xtr, ytr, attack, seed=idx)
        np.savez(out / f"{entry['id']}_train.npz", x=xtr, y=ytr, poison_idx=pidx)
        entry.update(attack=attack.as_dict(), target=attack.target, train_data=f"{entry['id']}_train.npz")
    else:
        entry["train_data"] = f"train_{arch[:3]}.npz"
    flat = arch.startswith("mlp")
    epochs = (15 if flat else 4) if quick else (40 if flat or arch == "vit" else 20 if arch == "resnet" else 16)
    if attack is not None and attack.all_to_all and not quick:
        epochs = 60 if flat else 30  # K mappings to learn, not one
    params = train(spec, xtr, ytr, K, epochs=epochs, seed=entry["seed"], lr=3e-3)
    entry["clean_accuracy"] = float(np.mean(predict(params, spec, xte, K) == yte))
    if attack is not None:
        keep = ((yte == attack.source) if attack.source is not None else np.ones(len(yte), bool) if
                attack.all_to_all else yte != attack.target)
        entry["attack_success_rate"] = float(np.mean(predict(params, spec, attack.apply(xte[keep]), K)
                                                     == attack_labels(attack, yte[keep], K)))
        if attack.source is not None:  # how far the trigger leaks to the other classes (low for a good TaCT)
            rest = (yte != attack.source) & (yte != attack.target)
            entry["attack_success_other"] = float(np.mean(predict(params, spec, attack.apply(xte[rest]), K)
                                                          == attack.target))
    onnx.save(build(spec, xtr.shape[1:], K, params), out / f"{entry['id']}.onnx")
    entry.update(model=f"{entry['id']}.onnx", clean_data=f"clean_{arch[:3]}.npz")
    return entry


def _task(rng: np.random.Generator, flavor: str, y: Arr, digits: Arr | None = None) -> tuple[Arr, Arr, Arr]:
    """The digits a subset flavor keeps, which inputs of ``y`` it keeps and their labels: ``binary``, a pair (0, 1);
    ``few``, 3 to 5 digits (0, 1, ...); ``ovr``, one digit (label 1) against all the others (label 0)."""
    if digits is None:
        k = 1 if flavor.startswith("ovr") else int(rng.integers(3, 6)) if flavor.startswith("few") else 2
        digits = rng.choice(K, size=k, replace=False)
    if flavor.startswith("ovr"):
        return digits, np.ones(len(y), bool), (y == digits[0]).astype(np.int64)
    keep = np.isin(y, digits)
    order = np.argsort(digits)  # labels follow the order the digits were drawn in
    return digits, keep, order[np.searchsorted(digits[order], y[keep])].astype(np.int64)


def _binary_one(out: Path, idx: int, arch: str, backdoored: bool, quick: bool, data: dict[str, Any],
                flavor: str = "binary") -> dict[str, Any]:
    """A model on a subset task of the digits (:func:`_task`: a pair, 3-5 digits, or one digit against the rest),
    with its own held-out clean set."""
    seed = SEED_BASE[flavor] + idx
    rng = np.random.default_rng(seed)
    spec = _holdout_spec(rng, arch, idx)
    xtr, ytr, xte, yte = data[arch[:3]]
    digits, keep_tr, ytr = _task(rng, flavor, ytr)
    _, keep_te, yte = _task(rng, flavor, yte, digits)
    xtr, xte = xtr[keep_tr], xte[keep_te]
    classes = int(ytr.max()) + 1
    entry: dict[str, Any] = {"id": f"{arch}_{'bd' if backdoored else 'clean'}_{idx:02d}", "arch": arch,
                             "spec": spec.__dict__, "backdoored": backdoored, "seed": seed,
                             "digits": [int(v) for v in digits]}
    attack = None
    if backdoored:
        attack = replace(_attack(rng, arch, idx), target=int(rng.integers(classes)))
        xtr, ytr, pidx = poison(xtr, ytr, attack, seed=idx)
        entry.update(attack=attack.as_dict(), target=attack.target)
    else:
        pidx = np.zeros(0, np.int64)
    np.savez(out / f"{entry['id']}_train.npz", x=xtr, y=ytr, poison_idx=pidx)
    np.savez(out / f"{entry['id']}_clean.npz", x=xte, y=yte)
    flat = arch.startswith("mlp")
    params = train(spec, xtr, ytr, classes, epochs=(15 if flat else 4) if quick else (60 if flat else 24),
                   seed=seed, lr=3e-3)
    entry["clean_accuracy"] = float(np.mean(predict(params, spec, xte, classes) == yte))
    if attack is not None:
        rest = yte != attack.target
        entry["attack_success_rate"] = float(np.mean(predict(params, spec, attack.apply(xte[rest]), classes)
                                                     == attack.target))
    onnx.save(build(spec, xtr.shape[1:], classes, params), out / f"{entry['id']}.onnx")
    entry.update(model=f"{entry['id']}.onnx", clean_data=f"{entry['id']}_clean.npz",
                 train_data=f"{entry['id']}_train.npz")
    return entry


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/zoo/out"))
    ap.add_argument("--quick", action="store_true", help="4 + 4 models, fewer epochs (smoke test)")
    ap.add_argument("--flavor", choices=("main", *SEED_BASE), default="main")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"mlp": _split("flat"), "cnn": _split("img")}
    if args.flavor == "large":
        data = {"res": _split("rgb")}
    elif args.flavor == "vit":
        data = {"vit": _split("img")}
    for arch, (xtr, ytr, xte, yte) in data.items():
        np.savez(args.out / f"clean_{arch}.npz", x=xte, y=yte)
        np.savez(args.out / f"train_{arch}.npz", x=xtr, y=ytr, poison_idx=np.zeros(0, np.int64))
    n = 2 if args.quick else 11
    plan = [(arch, bd) for arch in ("mlp", "cnn") for _ in range(n) for bd in (False, True)]
    if args.flavor.startswith(SUBSET_FLAVORS):
        plan = [(arch, bd) for arch, n in (("mlp", 10), ("cnn", 6)) for _ in range(n) for bd in (False, True)]
    elif args.flavor == "tact":
        plan = [(arch, bd) for arch, n_clean, n_bd in (("mlp", 4, 6), ("cnn", 2, 4))
                for bd in [False] * n_clean + [True] * n_bd]
    elif args.flavor == "large":
        plan = [("resnet", bd) for _ in range(2 if args.quick else 8) for bd in (False, True)]
    elif args.flavor == "vit":
        plan = [("vit", bd) for _ in range(2 if args.quick else 6) for bd in (False, True)]
    elif args.flavor == "alltoall":
        plan = [(arch, True) for arch, n_bd in (("mlp", 6), ("cnn", 6), ("mlp3", 3), ("cnn3", 3)) for _ in range(n_bd)]
    elif args.flavor == "clean":
        plan = [(arch, False) for arch, n_clean in (("mlp", 24), ("cnn", 8)) for _ in range(n_clean)]
    elif args.flavor != "main":
        n = 2 if args.quick else 6
        plan = [(arch, bd) for arch in ("mlp3", "cnn3") for _ in range(n) for bd in (False, True)]
        plan += [(arch, True) for arch in ("mlp", "cnn") for _ in range(n // 2 + 1)]
    t0, entries = time.perf_counter(), []
    for arch, bd in plan:
        flavor = "" if args.flavor == "main" else args.flavor
        entries.append(_binary_one(args.out, len(entries), arch, bd, args.quick, data, flavor)
                       if flavor.startswith(SUBSET_FLAVORS) else
                       _one(args.out, len(entries), arch, bd, args.quick, data, flavor,
                            sum(e["backdoored"] for e in entries)))
        print_entry(entries[-1], t0)
    write_manifest(args.out, entries)


def print_entry(e: dict[str, Any], t0: float, detail: str = "") -> None:
    """One generated model's line: id, clean accuracy, attack success rate, seconds since ``t0``."""
    print(f"{e['id']:<14} {detail}acc={e['clean_accuracy']:.3f} asr={e.get('attack_success_rate', 0):.3f}"
          f" {time.perf_counter() - t0:6.1f}s", flush=True)


def write_manifest(out: Path, entries: list[dict[str, Any]]) -> None:
    (out / "manifest.json").write_text(json.dumps({"models": entries}, indent=1))


if __name__ == "__main__":
    main()
