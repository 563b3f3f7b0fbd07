"""The STRIP guard at runtime: cost per input and what it catches, for several perturbation counts.

For every backdoored model of the zoos given (attack success >= 0.5), the guard is fitted on half of the
clean inputs and judged on the other half (false rejections) and on the same inputs with the model's
trigger stamped (inputs the trigger does not move left out: detection), once per perturbation count (the
scanner's default is 16, the inference server's 8). Usage::

    python -m benchmarks.strip_guard --zoo benchmarks/zoo/out [benchmarks/zoo/large ...] [--perturbations 16 8 4]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo.attacks import Attack, attack_labels
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.detectors.strip import StripGuard

MIN_ASR = 0.5


def _judge(guard: StripGuard, x: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    ent = guard.entropy(x)
    return ent < guard.threshold_, 1000 * (time.perf_counter() - start) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, nargs="+", default=[Path("benchmarks/zoo/out")])
    parser.add_argument("--perturbations", type=int, nargs="+", default=[16, 8, 4])
    args = parser.parse_args()
    tally: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for zoo in args.zoo:
        for e in json.loads((zoo / "manifest.json").read_text())["models"]:
            if not e["backdoored"] or e.get("attack_success_rate", 0) < MIN_ASR:
                continue
            model = open_model(zoo / e["model"])
            clean = load_npz(zoo / e["clean_data"], model.input_shape)
            attack = Attack(**e["attack"])
            half = len(clean) // 2
            fit_x, x, y = clean.x[:half], clean.x[half:], clean.y[half:]
            moved = attack_labels(attack, y, model.num_classes) != y
            stamped = attack.apply(x[moved]).astype(np.float32)
            for p in args.perturbations:
                guard = StripGuard(n_perturbations=p).fit(model, fit_x)
                rejected, ms_clean = _judge(guard, x)
                caught, ms_bd = _judge(guard, stamped)
                t = tally[(e["arch"], f"{p:>2} blends")]
                t["frr"].append(float(rejected.mean()))
                t["caught"].append(float(caught.mean()))
                t["ms_clean"].append(ms_clean)
                t["ms_triggered"].append(ms_bd)
            print(f"{zoo.name}/{e['id']:<16} {attack.kind:<10} caught " + "  ".join(
                f"{p}: {tally[(e['arch'], f'{p:>2} blends')]['caught'][-1]:.2f}" for p in args.perturbations),
                flush=True)
    print(f"\n{'arch':<8}{'guard':<11}{'models':>7}{'FRR':>8}{'caught':>8}{'ms/clean input':>16}{'ms/triggered':>14}")
    for (arch, mode), t in sorted(tally.items()):
        row: dict[str, Any] = {k: float(np.mean(v)) for k, v in t.items()}
        print(f"{arch:<8}{mode:<11}{len(t['frr']):>7}{row['frr']:>8.3f}{row['caught']:>8.3f}"
              f"{row['ms_clean']:>16.3f}{row['ms_triggered']:>14.3f}")


if __name__ == "__main__":
    main()
