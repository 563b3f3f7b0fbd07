"""Validate Fine-Pruning remediation on the zoo's backdoored models; honest before/after figures.

Usage: ``python -m benchmarks.validate_remediation [--zoo benchmarks/zoo/out] [--modes blind,reversed,oracle]
[--limit N] [--models ID,ID] [--rounds 2] [--nc-seconds 10] [--set key=value,...] [--json OUT.json]``
(all 22 backdoored models, three modes: ~9 minutes on 2 cores; ``--limit 3``: ~2 minutes).

Per model and mode it remediates with ``services.remediation`` and measures, on the held-out half of the
zoo's clean data (never used for pruning, fine-tuning or trigger reversal), clean accuracy and the attack
success rate of the TRUE trigger before and after. Modes:

* ``blind``: vanilla Fine-Pruning + fine-tuning, no trigger given (what a user without a scan gets);
* ``reversed``: the scanner's Neural Cleanse reverses a trigger on the fine-tuning half; its top-ranked
  class and trigger guide pruning and unlearning (the realistic pipeline: scan, then remediate). By
  default (``--rounds 2``) the remediated model is scanned again for the first scan's class and
  remediated once more; the last result is reported against the original model's held-out accuracy.
  Neural Cleanse stops on a wall-clock budget, so its reversal (and these rows) can vary run to run;
* ``oracle``: the true trigger is given (an upper bound; not achievable in deployment); patches and
  blends only, the kinds with a (mask, pattern) form.

All-to-all attacks (``--zoo benchmarks/zoo/alltoall``) and the kinds without a (mask, pattern) form are
measured with the attack itself: the share of stamped held-out inputs classified as the attack's label.

The bar (control card): ASR < 5% and clean-accuracy drop < 2 points.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo.attacks import Attack, attack_labels
from services.remediation.domain.fine_pruning import RemediationConfig, split_indices
from services.remediation.domain.report import RemediationReport
from services.remediation.domain.trigger import Trigger
from services.remediation.service_layer.remediate import remediate_model
from services.remediation.service_layer.rounds import reversed_trigger
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model


def true_trigger(attack: Attack, shape: tuple[int, ...]) -> Trigger | None:
    """The zoo's attack as (mask, pattern): a binary patch, or a constant ``alpha`` blend; None for the kinds
    that have no such form (sine, frame, dispersed pixels, warp) and for all-to-all attacks, whose ASR is
    measured with the attack itself (:func:`true_asr`)."""
    if attack.all_to_all or attack.kind not in ("patch", "blend"):
        return None
    z = np.zeros((1, *shape), np.float32)
    if attack.kind == "patch":
        mask = np.zeros(shape, np.float32)
        (mask.reshape(8, 8) if len(shape) == 1 else mask[0])[
            attack.row:attack.row + attack.size, attack.col:attack.col + attack.size] = 1.0
        return Trigger(mask, attack.apply(z)[0], attack.target)
    return Trigger(np.full(shape, attack.alpha, np.float32), attack.apply(z)[0] / attack.alpha, attack.target)


def true_asr(model: Path, attack: Attack, clean: Path, cfg: RemediationConfig) -> float:
    """The attack's own success on the held-out half: stamped inputs classified as the attack's label
    (all-to-all: each class's next one), over the inputs not already of that label."""
    onnx_model = open_model(model)
    data = load_npz(clean, onnx_model.input_shape)
    _, hold = split_indices(data.y, cfg.holdout_fraction, cfg.seed)
    x, y = data.x[hold], data.y[hold]
    want = attack_labels(attack, y, onnx_model.num_classes)
    keep = y != want
    pred = np.argmax(onnx_model.predict(attack.apply(x[keep])), axis=1)
    return float(np.mean(pred == want[keep]))


def run_one(entry: dict[str, Any], zoo: Path, mode: str, cfg: RemediationConfig, work: Path,
            nc_seconds: float, rounds: int = 1) -> dict[str, Any]:
    shape = open_model(zoo / entry["model"]).input_shape
    attack = Attack(**entry["attack"])
    truth = true_trigger(attack, shape)
    t0, model, clean = time.perf_counter(), zoo / entry["model"], zoo / entry["clean_data"]
    first: RemediationReport | None = None
    found = False
    universal = False
    for k in range(rounds if mode == "reversed" else 1):  # scan -> remediate, repeated on the result
        guide = {"blind": None, "oracle": truth}.get(mode)
        if mode == "reversed":
            guide = reversed_trigger(model, clean, cfg, nc_seconds, None if first is None else first.target, universal)
            universal = guide.all_to_all
        out = work / f"{entry['id']}_{mode}_{k}.onnx"
        r = remediate_model(model, clean, out, cfg, trigger=guide, eval_trigger=truth)
        found = found if first is not None else (guide is not None and (
            guide.all_to_all if attack.all_to_all else guide.target == attack.target))
        first, model = first or dataclasses.replace(r, target=None if guide is None else guide.target), out
    assert first is not None
    before, after = first.asr_before, r.asr_after
    if truth is None:  # measured with the attack itself
        before, after = true_asr(zoo / entry["model"], attack, clean, cfg), true_asr(model, attack, clean, cfg)
    assert before is not None and after is not None
    drop = first.clean_accuracy_before - r.clean_accuracy_after
    return {"id": entry["id"], "kind": entry["attack"]["kind"], "mode": mode, "acc_before": first.clean_accuracy_before,
            "acc_after": r.clean_accuracy_after, "asr_before": before, "asr_after": after,
            "pruned": f"{len(r.pruned.indices)}/{r.pruned.units} {r.pruned.kind}",
            "meets_bar": after < cfg.max_asr and drop < cfg.max_accuracy_drop,
            "target_found": None if mode == "blind" else found,
            "seconds": round(time.perf_counter() - t0, 2)}


def _print(rows: list[dict[str, Any]], modes: list[str]) -> None:
    print(f"{'model':<11} {'attack':<6} {'mode':<9} {'acc before':>10} {'acc after':>9} {'ASR before':>10} "
          f"{'ASR after':>9} {'pruned':>10} {'target ok':>9} {'bar':>4} {'s':>6}")
    for r in rows:
        tf = "-" if r["target_found"] is None else ("yes" if r["target_found"] else "NO")
        print(f"{r['id']:<11} {r['kind']:<6} {r['mode']:<9} {r['acc_before']:>10.3f} {r['acc_after']:>9.3f} "
              f"{r['asr_before']:>10.3f} {r['asr_after']:>9.3f} {r['pruned']:>10} {tf:>9} "
              f"{'ok' if r['meets_bar'] else 'FAIL':>4} {r['seconds']:>6.1f}")
    print("\naggregate (mean over models; drop = accuracy points lost on held-out data)")
    for mode in modes:
        for kind in (*dict.fromkeys(r["kind"] for r in rows), "all"):
            sel = [r for r in rows if r["mode"] == mode and kind in (r["kind"], "all")]
            if sel:
                drop = np.mean([r["acc_before"] - r["acc_after"] for r in sel])
                print(f"  {mode:<9} {kind:<6} n={len(sel):<3} ASR {np.mean([r['asr_before'] for r in sel]):.3f} -> "
                      f"{np.mean([r['asr_after'] for r in sel]):.3f}  acc drop {drop:+.3f}  "
                      f"meet bar {sum(r['meets_bar'] for r in sel)}/{len(sel)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=Path("benchmarks/zoo/out"))
    ap.add_argument("--modes", default="blind,reversed,oracle")
    ap.add_argument("--limit", type=int, default=None, help="at most N backdoored models per architecture")
    ap.add_argument("--models", default=None, help="comma-separated model ids")
    ap.add_argument("--nc-seconds", type=float, default=10.0, help="Neural Cleanse budget per model")
    ap.add_argument("--rounds", type=int, default=2, help="reversed mode: scan and remediate this many times")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="", help="config overrides, e.g. epochs=20,refresh_steps=0")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    entries = [e for e in json.loads((args.zoo / "manifest.json").read_text())["models"] if e["backdoored"]]
    if args.models:
        entries = [e for e in entries if e["id"] in set(args.models.split(","))]
    if args.limit is not None:
        entries = [e for arch in ("mlp", "cnn") for e in [e for e in entries if e["arch"] == arch][:args.limit]]
    over = dict(kv.split("=", 1) for kv in args.set.split(",") if kv)
    base = RemediationConfig(seed=args.seed)
    cfg = RemediationConfig(**{**base.__dict__, **{k: type(getattr(base, k))(v) for k, v in over.items()}})
    modes, rows = args.modes.split(","), []
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            for mode in modes:
                if mode == "oracle" and true_trigger(Attack(**e["attack"]), (64,)) is None:
                    continue  # no (mask, pattern) form of this attack to give
                rows.append(run_one(e, args.zoo, mode, cfg, Path(tmp), args.nc_seconds, args.rounds))
                print(f"  {e['id']} {mode}: ASR {rows[-1]['asr_before']:.3f} -> {rows[-1]['asr_after']:.3f}, acc "
                      f"{rows[-1]['acc_before']:.3f} -> {rows[-1]['acc_after']:.3f}", flush=True)
    _print(rows, modes)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
