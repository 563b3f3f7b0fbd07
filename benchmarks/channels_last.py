"""Scan zoo image models exported channels-last ([N, H, W, C]) and print what the layout costs.

Each model of the zoo gets one Transpose in front (``as_channels_last``), its clean data is transposed to
match, and it is scanned twice: with the layout found automatically (scanned as [C, H, W]) and forced to
channels-first (masks over [W, C], what the scanner did before it knew the layout). Usage::

    python -m benchmarks.channels_last --zoo benchmarks/zoo/large [--limit 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from benchmarks.zoo.nets import as_channels_last
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import ScanConfig, scan_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("benchmarks/zoo/large"))
    parser.add_argument("--limit", type=int, default=0, help="scan the first N models only (0: all)")
    parser.add_argument("--layouts", default="auto,channels_first")
    args = parser.parse_args()
    entries = json.loads((args.zoo / "manifest.json").read_text())["models"]
    entries = [e for e in entries if len(load_npz(args.zoo / e["clean_data"]).x.shape) == 4]
    entries = entries[:args.limit] if args.limit else entries
    layouts = args.layouts.split(",")
    tally = {layout: {"tp": 0, "fp": 0, "target": 0, "seconds": 0.0} for layout in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            path = Path(tmp) / f"{e['id']}_hwc.onnx"
            onnx.save(as_channels_last(onnx.load(str(args.zoo / e["model"]))), path)
            clean = load_npz(args.zoo / e["clean_data"])
            data = Dataset(np.ascontiguousarray(clean.x.transpose(0, 2, 3, 1)), clean.y)
            line = [f"{e['id']:<18} {'backdoored' if e['backdoored'] else 'clean':<10}"]
            for layout in layouts:
                began = time.perf_counter()
                verdict = scan_model(open_model(path), data, ScanConfig(input_layout=layout))
                seconds = time.perf_counter() - began
                t = tally[layout]
                t["seconds"] += seconds
                t["tp" if e["backdoored"] else "fp"] += int(verdict.backdoor_detected)
                t["target"] += int(verdict.backdoor_detected and e.get("target") in verdict.target_classes)
                line.append(f"{layout}: {'FLAG' if verdict.backdoor_detected else 'pass'} "
                            f"{verdict.target_classes} {seconds:.1f}s")
            print("  ".join(line), flush=True)
    n_bd = sum(e["backdoored"] for e in entries)
    for layout, t in tally.items():
        print(f"{layout:<15} caught {t['tp']}/{n_bd} (target right {t['target']}), false alarms "
              f"{t['fp']}/{len(entries) - n_bd}, mean scan {t['seconds'] / max(len(entries), 1):.1f} s")


if __name__ == "__main__":
    main()
