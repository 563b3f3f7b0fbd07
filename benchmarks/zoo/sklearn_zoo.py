"""A zoo of scikit-learn MLPs exported by skl2onnx: models trained the way a scikit-learn user trains them.

The other zoos are trained by the project's own numpy trainer (a fixed number of epochs, small widths). A
user with scikit-learn trains ``MLPClassifier`` to convergence with Adam and L2, often behind a
``StandardScaler`` fed raw pixels, and exports with skl2onnx (``Softmax -> Identity`` head, a ZipMap unless
turned off). Natural triggers of such models differ from the zoo's: the thresholds were never set on them,
so this zoo measures what they are worth on a recipe the project did not write.

    python -m benchmarks.zoo.sklearn_zoo --out benchmarks/zoo/sklearn [--flavor sklearn2] [--quick]

Each model draws its recipe: hidden layers ((64,), (100,), (128,), (64, 32)), activation (relu twice as
often as tanh), L2 ``alpha`` (1e-4, 1e-3), early stopping or not, and its input: digits in [0, 1] or raw
pixels 0..16 behind a ``StandardScaler`` or a ``MinMaxScaler``. Backdoored ones carry the main and holdout
zoos' trigger kinds (patch, blend, sig, frame, dispersed, warp), stamped in [0, 1] and scaled back for raw
pixels. ``--flavor sklearn-default`` holds ``MLPClassifier()`` with its defaults (one hidden layer of 100, Adam,
``alpha`` 1e-4) on digits in [0, 1], the recipe a user starts from. Writes the same ``manifest.json`` as
:mod:`.generate`, so ``benchmarks.validate_detection`` reads it.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from benchmarks.zoo.attacks import Attack, digits
from benchmarks.zoo.generate import HELD_OUT, _holdout_attack, print_entry, write_manifest

SEED_BASE = {"sklearn": 41000, "sklearn2": 42000, "sklearn-default": 43000}
HIDDEN = ((64,), (100,), (128,), (64, 32))
INPUTS = ("unit", "standard", "minmax")  # digits in [0, 1]; raw pixels behind a StandardScaler / MinMaxScaler


def _recipe(rng: np.random.Generator, flavor: str = "sklearn") -> dict[str, Any]:
    if flavor == "sklearn-default":  # MLPClassifier() as it comes, on digits in [0, 1]
        return {"hidden": [100], "activation": "relu", "alpha": 1e-4, "early_stopping": False, "input": "unit",
                "zipmap": bool(rng.integers(2))}
    return {"hidden": [int(v) for v in HIDDEN[int(rng.integers(len(HIDDEN)))]],
            "activation": str(rng.choice(["relu", "relu", "tanh"])), "alpha": float(rng.choice([1e-4, 1e-3])),
            "early_stopping": bool(rng.integers(2)), "input": str(rng.choice(INPUTS)),
            "zipmap": bool(rng.integers(2))}


def _classifier(recipe: dict[str, Any], seed: int) -> Any:
    mlp = MLPClassifier(tuple(recipe["hidden"]), activation=recipe["activation"], alpha=recipe["alpha"],
                        early_stopping=recipe["early_stopping"], max_iter=400, random_state=seed)
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler}.get(recipe["input"])
    return mlp if scaler is None else make_pipeline(scaler(), mlp)


def _stamp(attack: Attack, x: np.ndarray, scale: float) -> np.ndarray:
    return (attack.apply(x / scale) * scale).astype(np.float32)


def _one(out: Path, idx: int, backdoored: bool, flavor: str, split: tuple[Any, ...], n_backdoored: int,
         quick: bool) -> dict[str, Any]:
    seed = SEED_BASE[flavor] + idx
    rng = np.random.default_rng(seed)
    recipe = _recipe(rng, flavor)
    scale = 1.0 if recipe["input"] == "unit" else 16.0
    xtr, ytr, xte, yte = (a * scale if a.dtype == np.float32 else a for a in split)
    entry: dict[str, Any] = {"id": f"skl_{'bd' if backdoored else 'clean'}_{idx:02d}", "arch": "sklearn-mlp",
                             "spec": recipe, "backdoored": backdoored, "seed": seed,
                             "clean_data": f"clean_{'unit' if scale == 1.0 else 'raw'}.npz",
                             "train_data": f"train_{'unit' if scale == 1.0 else 'raw'}.npz"}
    attack = None
    if backdoored:
        attack = _holdout_attack(rng, "mlp", n_backdoored)
        pick = np.random.default_rng(idx).choice(len(xtr), size=int(attack.rate * len(xtr)), replace=False)
        pick = pick[ytr[pick] != attack.target]
        xtr, ytr = xtr.copy(), ytr.copy()
        xtr[pick], ytr[pick] = _stamp(attack, xtr[pick], scale), attack.target
        entry.update(attack=attack.as_dict(), target=attack.target, poison_idx=[int(i) for i in pick])
    clf = _classifier({**recipe, "hidden": recipe["hidden"][:1]} if quick else recipe, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    entry["clean_accuracy"] = float(np.mean(clf.predict(xte) == yte))
    if attack is not None:
        keep = yte != attack.target
        entry["attack_success_rate"] = float(np.mean(clf.predict(_stamp(attack, xte[keep], scale)) == attack.target))
        np.savez(out / f"{entry['id']}_train.npz", x=xtr, y=ytr, poison_idx=np.asarray(entry.pop("poison_idx")))
        entry["train_data"] = f"{entry['id']}_train.npz"
    from skl2onnx import to_onnx  # benchmarks only: the scanner reads these files without skl2onnx

    model = to_onnx(clf, xtr[:1], options=None if recipe["zipmap"] else {"zipmap": False})
    onnx.save(model, out / f"{entry['id']}.onnx")
    entry["model"] = f"{entry['id']}.onnx"
    return entry


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/zoo/sklearn"))
    ap.add_argument("--flavor", choices=tuple(SEED_BASE), default="sklearn")
    ap.add_argument("--quick", action="store_true", help="2 + 2 models, one hidden layer")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    x, y = digits("flat")
    order = np.random.default_rng(0).permutation(len(x))
    split = (x[order[HELD_OUT:]], y[order[HELD_OUT:]], x[order[:HELD_OUT]], y[order[:HELD_OUT]])
    np.savez(args.out / "clean_unit.npz", x=split[2], y=split[3])
    np.savez(args.out / "clean_raw.npz", x=split[2] * 16.0, y=split[3])
    for name, scale in (("unit", 1.0), ("raw", 16.0)):
        np.savez(args.out / f"train_{name}.npz", x=split[0] * scale, y=split[1], poison_idx=np.zeros(0, np.int64))
    n = 2 if args.quick else 12
    t0, entries = time.perf_counter(), []
    for bd in [False] * n + [True] * n:
        entries.append(_one(args.out, len(entries), bd, args.flavor, split, sum(e["backdoored"] for e in entries),
                            args.quick))
        print_entry(entries[-1], t0, f"{entries[-1]['spec']['input']:<9} ")
    write_manifest(args.out, entries)


if __name__ == "__main__":
    main()
