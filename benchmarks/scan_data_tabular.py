"""``scan-data`` on data that is not digits: false alarms on clean tabular sets and all-to-all poison in them.

Usage: ``python -m benchmarks.scan_data_tabular [--epochs 60]``

The detection zoos are all digit images, and their clean models share a handful of training sets. This
runs the default data-level scan on sets built from other generators (scikit-learn's ``make_classification``
with 3-20 classes and poor to good separation, and its iris, wine and breast-cancer sets), each with an MLP
trained on it by the zoo's numpy trainer and exported to ONNX, and prints per set:

* clean: how many samples each detector would quarantine, and what the verdict quarantines (a false alarm);
* poisoned: the same set with 15% of the samples given a trigger (three features set to the set's maximum)
  and relabelled c -> c + 1, trained on again: the verdict's poisoned-sample precision and recall.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.datasets import load_breast_cancer, load_iris, load_wine, make_classification
from threadpoolctl import threadpool_limits

from benchmarks.zoo.nets import NetSpec, build, train
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import scan_training_data

Arr = np.ndarray[Any, Any]
POISON_RATE = 0.15


def data_sets() -> Iterator[tuple[str, Arr, Arr]]:
    """(name, standardised float32 inputs, int labels) of every set the benchmark scans."""
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        x, y = loader(return_X_y=True)
        yield name, x, y
    for k in (3, 5, 10, 20):
        for sep in (0.7, 1.0, 2.0):
            for informative in (6, 20):
                x, y = make_classification(n_samples=1500, n_features=40, n_informative=informative, n_redundant=5,
                                           n_classes=k, n_clusters_per_class=2 if 2 * k <= 2**informative else 1,
                                           class_sep=sep, random_state=100 * k + informative)
                yield f"synthetic k={k} sep={sep} informative={informative}", x, y


def _standard(x: Arr) -> Arr:
    out: Arr = ((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)).astype(np.float32)
    return out


def poisoned(x: Arr, y: Arr, seed: int) -> tuple[Arr, Arr, Arr]:
    """All-to-all poison: a share of the samples get three features set to the set's maximum, label c + 1."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=round(POISON_RATE * len(x)), replace=False))
    xp, yp = x.copy(), y.copy()
    xp[np.ix_(idx, rng.choice(x.shape[1], size=3, replace=False))] = x.max()
    yp[idx] = (y[idx] + 1) % (int(y.max()) + 1)
    return xp, yp, idx


def scan(x: Arr, y: Arr, epochs: int, seed: int) -> tuple[list[int], dict[str, int], float]:
    """The verdict's quarantined samples and each flagging detector's count, after training an MLP on (x, y)."""
    k = int(y.max()) + 1
    spec = NetSpec("mlp", 64, "Relu")
    params = train(spec, x, y, k, epochs=epochs, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(build(spec, x.shape[1:], k, params), Path(tmp) / "model.onnx")
        model = open_model(Path(tmp) / "model.onnx")
    start = time.perf_counter()
    verdict = scan_training_data(model, Dataset(x, y.astype(np.int64)))
    per = {r.key: len(r.suspicious_indices) for r in verdict.results if r.flagged}
    return verdict.suspicious_indices, per, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)
    threadpool_limits(1)
    clean_flagged, tp, fp, fn, found = 0, 0, 0, 0, 0
    sets = list(data_sets())
    for i, (name, x_raw, y) in enumerate(sets):
        x = _standard(x_raw)
        quarantined, per, secs = scan(x, y, args.epochs, seed=i)
        clean_flagged += bool(quarantined)
        line = f"{name:<40} clean: {len(quarantined):>4} quarantined {per or ''} ({secs:.1f}s)"
        if int(y.max()) >= 2:  # all-to-all needs a third class
            xp, yp, idx = poisoned(x, y, seed=i)
            got, per_p, _ = scan(xp, yp, args.epochs, seed=i)
            hit = len(set(got) & set(idx.tolist()))
            tp, fp, fn = tp + hit, fp + len(got) - hit, fn + len(idx) - hit
            found += hit > len(idx) // 2
            line += f" | poisoned: precision {hit / max(len(got), 1):.2f} recall {hit / len(idx):.2f} {per_p or ''}"
        print(line, flush=True)
    poisoned_sets = sum(int(y.max()) >= 2 for _, _, y in sets)
    print(f"\nclean sets with anything quarantined: {clean_flagged} / {len(sets)}")
    print(f"all-to-all poison: precision {tp / max(tp + fp, 1):.3f} recall {tp / max(tp + fn, 1):.3f} "
          f"(micro), more than half found in {found} / {poisoned_sets} sets")


if __name__ == "__main__":
    main()
