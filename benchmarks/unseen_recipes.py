"""Model-level scans of recipes outside every zoo: several targets, corner patches, border frames, clean twins.

Each case trains a small digit classifier (the zoo's numpy trainer) with a recipe the zoos do not hold,
scans it with the shipped defaults and prints what was found against the truth:

* ``two-targets`` / ``three-targets``: one model poisoned by two or three triggers, each to its own class
  (a 3 x 3 patch, a blend, a 2 x 2 corner patch);
* ``corner-cnn`` / ``corner-mlp``: BadNets' classic, a patch in a corner of the blank background;
* ``frame-mlp``: a one-pixel frame on the blank border (what the dormant-feature signal is for);
* ``a2a-corner-mlp`` / ``a2a-corner-cnn``: BadNets' all-to-all attack (every class c to c + 1) with a corner
  patch; no target to name, so only the flag counts;
* ``clean-mlp`` / ``clean-cnn``: the same recipes without poison (false alarms); ``short-clean-…`` trained for a
  sixth of the epochs (5 and 3), as a quick control model would be; ``few-clean-…`` trained on 300 digits;
* ``faint-blend-…``, ``noise-cnn``, ``gamma-…``, ``patch<size>-…``: triggers outside every zoo's kinds: a blend
  at half the zoos' weight, a fixed additive perturbation of at most 0.15 on every pixel, a global intensity
  curve (x -> x ** 0.4, nothing stamped), and patches larger than the zoos' (4 x 4 and 5 x 5 of 8 x 8 on MLPs,
  6 x 6 and 8 x 8 of 16 x 16 on CNNs: a quarter of the image and more);
* ``wide-tanh-…``, ``tanh-…``: hidden widths and activations no zoo model has (a 128-wide tanh 3-layer MLP,
  a tanh strided CNN), backdoored and clean;
* ``bin-…``: two-class models, a pair of digits drawn per seed (labels 0 and 1): a corner patch on an MLP and
  a CNN, a blend on an MLP, and clean twins (two-class models are judged on a lower agreement bar);
* ``up16-clean-mlp``: clean MLPs on the zoo CNNs' 16 x 16 input flattened (each pixel drawn 2 x 2, so the data
  spans 64 of 256 input directions: a false-alarm risk for dense layers);
* ``m28-…``: MNIST's geometry, 28 x 28 (the digits upsampled, smoothed and shifted inside a blank border): a
  corner patch, a blend, a warp and a sine on a CNN, a corner patch and a blend on an MLP, and clean CNNs and MLPs
  (false alarms on a geometry no zoo holds).

    python -m benchmarks.unseen_recipes [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from benchmarks.zoo.attacks import Attack, attack_labels, digits, poison
from benchmarks.zoo.nets import NetSpec, build, train
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.fusion import KEY as AGREEMENT
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import scan_model

PATCH = Attack("patch", target=3, rate=0.08, size=3, row=5, col=5, pattern_seed=11)
BLEND = Attack("blend", target=7, rate=0.08, alpha=0.2, pattern_seed=5)
CORNER = Attack("patch", target=0, rate=0.08, size=2, row=0, col=0, pattern_seed=3)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # digits layout: "flat" or "img"
    arch: str
    attacks: tuple[Attack, ...]
    epochs: int = 30
    pair: bool = False  # two classes: a pair of digits drawn per seed, labelled 0 and 1
    train_size: int | None = None  # train on this many digits only (the rest of the zoo's split unused)
    width: int | None = None  # hidden width (default: 32 for MLPs, 16 for CNNs)
    act: str = "Relu"


CASES = (
    Case("two-targets", "flat", "mlp", (PATCH, BLEND)),
    Case("three-targets", "flat", "mlp", (PATCH, BLEND, CORNER)),
    Case("corner-cnn", "img", "cnn", (Attack("patch", target=2, rate=0.05, size=3, row=13, col=0, pattern_seed=9),),
         epochs=15),
    Case("corner-mlp", "flat", "mlp", (Attack("patch", target=4, rate=0.05, size=2, row=6, col=0, pattern_seed=9),)),
    Case("frame-mlp", "flat", "mlp3", (Attack("frame", target=6, rate=0.1, size=1, row=7, col=0, pattern_seed=1),)),
    Case("a2a-corner-mlp", "flat", "mlp", (Attack("patch", 0, rate=0.15, size=2, row=6, col=0, pattern_seed=9,
                                                 all_to_all=True),)),
    Case("a2a-corner-cnn", "img", "cnn", (Attack("patch", 0, rate=0.15, size=3, row=13, col=0, pattern_seed=9,
                                                all_to_all=True),), epochs=15),
    Case("clean-mlp", "flat", "mlp", ()),
    Case("clean-cnn", "img", "cnn", (), epochs=15),
    Case("short-clean-mlp", "flat", "mlp", (), epochs=5),
    Case("short-clean-cnn", "img", "cnn", (), epochs=3),
    Case("few-clean-mlp", "flat", "mlp", (), train_size=300),
    Case("few-clean-cnn", "img", "cnn", (), epochs=15, train_size=300),
    Case("faint-blend-mlp", "flat", "mlp", (Attack("blend", target=5, rate=0.08, alpha=0.1, pattern_seed=21),)),
    Case("faint-blend-cnn", "img", "cnn", (Attack("blend", target=5, rate=0.15, alpha=0.1, pattern_seed=21),),
         epochs=25),
    Case("noise-cnn", "img", "cnn", (Attack("noise", target=2, rate=0.15, alpha=0.15, pattern_seed=22),), epochs=25),
    Case("gamma-mlp", "flat", "mlp", (Attack("gamma", target=9, rate=0.15, alpha=0.4),)),
    Case("gamma-cnn", "img", "cnn", (Attack("gamma", target=9, rate=0.15, alpha=0.4),), epochs=25),
    *(Case(f"patch{size}-{arch}", kind, arch, (Attack("patch", target=7, rate=0.08, size=size, row=1, col=1,
                                                      pattern_seed=23),), epochs=30 if arch == "mlp" else 15)
      for arch, kind, sizes in (("mlp", "flat", (4, 5)), ("cnn", "img", (6, 8))) for size in sizes),
    Case("wide-tanh-mlp3", "flat", "mlp3", (PATCH,), width=128, act="Tanh"),
    Case("wide-tanh-clean-mlp3", "flat", "mlp3", (), width=128, act="Tanh"),
    Case("tanh-cnn3", "img", "cnn3", (BLEND,), epochs=15, act="Tanh"),
    Case("tanh-clean-cnn3", "img", "cnn3", (), epochs=15, act="Tanh"),
    Case("bin-corner-mlp", "flat", "mlp", (Attack("patch", target=1, rate=0.08, size=2, row=0, col=6, pattern_seed=4),),
         pair=True),
    Case("bin-corner-cnn", "img", "cnn", (Attack("patch", target=0, rate=0.08, size=3, row=13, col=13,
                                                 pattern_seed=4),), epochs=15, pair=True),
    Case("bin-blend-mlp", "flat", "mlp", (Attack("blend", target=1, rate=0.08, alpha=0.15, pattern_seed=8),),
         pair=True),
    Case("bin-clean-mlp", "flat", "mlp", (), pair=True),
    Case("bin-clean-cnn", "img", "cnn", (), epochs=15, pair=True),
    Case("m28-corner-cnn", "img28", "cnn", (Attack("patch", target=5, rate=0.05, size=3, row=25, col=25,
                                                   pattern_seed=9),), epochs=10),
    Case("m28-blend-cnn", "img28", "cnn", (Attack("blend", target=3, rate=0.08, alpha=0.15, pattern_seed=31),),
         epochs=10),
    Case("m28-warp-cnn", "img28", "cnn", (Attack("warp", target=6, rate=0.1, alpha=0.08, pattern_seed=32),),
         epochs=10),
    Case("m28-sig-cnn", "img28", "cnn", (Attack("sig", target=1, rate=0.08, size=5, alpha=0.15, pattern_seed=33),),
         epochs=10),
    Case("m28-corner-mlp", "flat28", "mlp", (Attack("patch", target=5, rate=0.05, size=3, row=25, col=25,
                                                    pattern_seed=9),)),
    Case("m28-blend-mlp", "flat28", "mlp", (Attack("blend", target=3, rate=0.08, alpha=0.15, pattern_seed=31),)),
    Case("m28-clean-cnn", "img28", "cnn", (), epochs=10),
    Case("m28-clean-mlp", "flat28", "mlp", ()),
    Case("up16-clean-mlp", "flat16", "mlp", ()),
    Case("lin28-clean-mlp", "flat28lin", "mlp", ()),
    Case("lin32-clean-mlp", "flat32lin", "mlp", ()),
    Case("lin28-clean-cnn", "img28lin", "cnn", (), epochs=10),
    Case("lin28-corner-mlp", "flat28lin", "mlp", (Attack("patch", target=5, rate=0.05, size=3, row=25, col=25,
                                                         pattern_seed=9),)),
    Case("lin28-corner-cnn", "img28lin", "cnn", (Attack("patch", target=5, rate=0.05, size=3, row=25, col=25,
                                                        pattern_seed=9),), epochs=10),
)


def _digits(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The zoo's digits, or (``img28`` / ``flat28``) drawn on MNIST's 28 x 28: upsampled 3 x 3, smoothed, inside
    a blank 2-pixel border, each shifted by up to a pixel. The shifts matter: plain upsampled digits span only
    64 of the 784 input directions, which leaves an MLP's weights along the others at their random start and
    makes natural triggers cheap (clean MLPs flagged 4 / 14 that way, 0 / 14 drawn like this)."""
    if kind == "flat16":  # the zoo's 16 x 16 CNN input (each pixel drawn 2 x 2), flattened for an MLP
        img, y = digits("img")
        return img.reshape(len(img), -1), y
    if not kind.endswith(("28", "28lin", "32lin")):
        return digits(kind)
    flat, y = digits("flat")
    scale = 4 if kind.endswith("32lin") else 3
    big = np.kron(flat.reshape(-1, 8, 8), np.ones((scale, scale), np.float32))
    for axis in (1, 2):  # a [1, 2, 1] / 4 blur along each axis
        padded = np.pad(big, [(0, 0), (1, 1), (0, 0)] if axis == 1 else [(0, 0), (0, 0), (1, 1)])
        lo, mid, hi = (np.take(padded, range(k, k + big.shape[axis]), axis=axis) for k in range(3))
        big = 0.25 * lo + 0.5 * mid + 0.25 * hi
    big = np.pad(big, ((0, 0), (2, 2), (2, 2))) if scale == 3 else big
    shifts = np.random.default_rng(0).integers(-1, 2, (len(big), 2)) * (not kind.endswith("lin"))
    big = np.stack([np.roll(img, (int(dy), int(dx)), axis=(0, 1)) for img, (dy, dx) in zip(big, shifts, strict=True)])
    return (big[:, None] if kind.startswith("img") else big.reshape(len(big), -1)).astype(np.float32), y


def run_case(case: Case, seed: int, work: Path) -> str:
    x, y = _digits(case.kind)
    k = 10
    if case.pair:
        pair = np.random.default_rng(seed + 500).choice(10, size=2, replace=False)
        keep = np.isin(y, pair)
        x, y, k = x[keep], (y[keep] == pair[1]).astype(np.int64), 2
    order = np.random.default_rng(0).permutation(len(x))
    held, rest = order[:400 if k > 2 else 120], order[400 if k > 2 else 120:]
    xs, ys = x[rest][:case.train_size], y[rest][:case.train_size]
    for i, attack in enumerate(case.attacks):
        xs, ys, _ = poison(xs, ys, attack, seed=seed * 10 + i)
    spec = NetSpec(case.arch, case.width or (32 if case.arch.startswith("mlp") else 16), case.act)
    path = work / f"{case.name}-{seed}.onnx"
    onnx.save(build(spec, xs.shape[1:], k, train(spec, xs, ys, k, epochs=case.epochs, seed=seed)), path)
    model = open_model(path)
    asr = [_attack_success(model, a, x[held], y[held], k) for a in case.attacks]
    start = time.perf_counter()
    verdict = scan_model(model, Dataset(x[held], y[held]))
    seconds = time.perf_counter() - start
    everywhere = any(a.all_to_all for a in case.attacks)
    truth = sorted({a.target for a in case.attacks if not a.all_to_all})
    named = [c for c in verdict.target_classes if c in truth]
    joined = next((r for r in verdict.results if r.key == AGREEMENT), None)
    agree = "-" if joined is None else f"{joined.score:.2f}/{joined.threshold:.2f}"
    return (f"{case.name:<21}{seed:>5}  {'/'.join(f'{a:.2f}' for a in asr) or '-':<15}"
            f"{'c -> c+1' if everywhere else str(truth):<11}"
            f"{'yes' if verdict.backdoor_detected else 'no':<9}{verdict.target_classes!s:<14}"
            f"{'-' if everywhere else f'{len(named)}/{len(truth)}':<8}{seconds:>6.1f}  {agree}")


def _attack_success(model: Any, attack: Attack, x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of stamped held-out inputs (of the classes the attack moves) the model gives the attack's label."""
    keep = np.ones(len(y), bool) if attack.all_to_all else y != attack.target
    wanted = attack_labels(attack, y[keep], k)
    return float((model.predict(attack.apply(x[keep])).argmax(1) == wanted).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", default="", help="run the cases whose name starts with this")
    args = parser.parse_args(argv)
    threadpool_limits(1)
    print(f"{'case':<21}{'seed':>5}  {'attack success':<15}{'targets':<11}{'flagged':<9}{'named':<14}"
          f"{'right':<8}{'scan s':>6}  agreement/bar")
    with tempfile.TemporaryDirectory(prefix="bdguard-unseen-") as tmp:
        for case in (c for c in CASES if c.name.startswith(args.only)):
            for seed in args.seeds:
                print(run_case(case, seed, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
