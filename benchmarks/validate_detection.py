"""BackdoorDetectionValidation: detection figures of the scanner on the generated zoo.

Usage: ``python -m benchmarks.validate_detection --zoo benchmarks/zoo/out [ZOO ...] [--fresh] [--only mlp]``

Runs every model-level detector on every zoo model (results cached in ``<zoo>/results.jsonl``),
then prints TPR / FPR / precision / recall / F1 / target-class accuracy per detector and for the
combined verdict, (a) at the shipped default thresholds and (b) with thresholds calibrated on the
*other* half of the zoo's clean models (2-fold, FPR 5%), so no model is scored with a threshold
fitted on itself. Also: poisoned-sample precision/recall of ``scan-data``, detector timings and
the STRIP guard's amortised cost per input. Given several zoos, the figures are pooled over them, the
shipped verdict is also broken down per zoo, and the calibrated thresholds are fitted leaving one zoo
out: each zoo is scored with thresholds fitted on the other zoos' clean models, a fairer test of a
threshold than one fitted on the same training recipe.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import open_model
from services.scanner.domain.all_to_all import DEFAULT_THRESHOLD as A2A_THRESHOLD
from services.scanner.domain.all_to_all import KEY as A2A
from services.scanner.domain.all_to_all import all_to_all
from services.scanner.domain.detectors import REGISTRY
from services.scanner.domain.detectors.base import DetectionResult, factory_for
from services.scanner.domain.detectors.neural_cleanse import baseline_index
from services.scanner.domain.detectors.strip import StripGuard
from services.scanner.domain.fusion import DEFAULT_THRESHOLD as AGREEMENT_THRESHOLD
from services.scanner.domain.fusion import KEY as AGREEMENT
from services.scanner.domain.fusion import agreement
from services.scanner.domain.fusion import bar as agreement_bar
from services.scanner.domain.isolation import DEFAULT_THRESHOLD as ISO_THRESHOLD
from services.scanner.domain.isolation import KEY as ISO
from services.scanner.domain.isolation import isolated_trigger
from services.scanner.domain.policy import combine
from services.scanner.service_layer.scan import (
    BUDGETED,
    DEFAULT_MODEL_DETECTORS,
    ScanConfig,
    run_detectors,
    scan_training_data,
)

NC = "neural_cleanse.v2"
MIN_ASR = 0.5
REVISION = 3  # bump when detector code changes what it computes without a key or parameter change
# (3: convolutions and pooling on onnxruntime kernels, which move scores by float rounding)
# The same, for one detector. NC: 3 publishes foreign_class_scores; 4 as REVISION 3; 5 publishes the
# untargeted search (all_to_all_index). Dormant features: 2 scores two-class models; 3 reads pushes from
# 0.1 up (NOISE_PUSH).
KEY_REVISIONS = {NC: 5, "dormant_features.v1": 3}
_VERSION = re.compile(r"\.v\d+")


def _budgets(keys: list[str], seed: int, model: Any, as_macs: float | None) -> dict[str, dict[str, Any]]:
    """Detector parameters that scan ``model`` as a model of ``as_macs`` multiply-accumulates per sample is
    scanned (``{}`` for ``None``): its work budgets times its own cost over ``as_macs``, so a digit CNN gets
    the searches a CIFAR ResNet-18 gets, cut to the same steps and batches, in a second's work."""
    if as_macs is None:
        return {}
    scale = float(model.macs_per_sample) / as_macs
    return {k: {"budget_macs": float(b) * scale} for k in keys if k in BUDGETED
            and (b := REGISTRY[k](seed=seed).get_params().get("budget_macs")) is not None}


def _signature(key: str, seed: int, nes: bool = False, params: dict[str, Any] | None = None, tag: str = "") -> str:
    params = REGISTRY[key](seed=seed, **(params or {})).get_params()
    sig = {"revision": KEY_REVISIONS.get(key, REVISION), "key": key, "params": params, **({"tag": tag} if tag else {})}
    return json.dumps({**sig, "gradients": "nes"} if nes else sig, sort_keys=True, default=str)


def _open(path: Path, nes: bool) -> Any:
    """The model, with its gradients estimated (NES) instead of exact when ``nes``: how the scanner
    works on graphs its numpy tape cannot differentiate."""
    model = open_model(path)
    if nes:
        model.tape, model.exact_gradients = None, False
        model.gradient_passes = 1 + 2 * model.nes_samples
    return model


def _cached(line: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(model id, detector signature, result) of one cache line. Lines hold one detector's result;
    older lines held all detectors under one joint signature, which is split per detector here."""
    row = json.loads(line)
    if "key" in row:
        return [(row["id"], row["signature"], row["result"])]
    joint = json.loads(row.get("signature") or "{}")
    return [(row["id"], json.dumps({"revision": joint.get("revision"), "key": r["key"],
                                    "params": joint.get("detectors", {}).get(r["key"])}, sort_keys=True, default=str),
             r) for r in row.get("results", [])]


def _run_models(zoo: Path, models: list[dict[str, Any]], fresh: bool, seed: int = 0, nes: bool = False,
                as_macs: float | None = None, tag: str = "") -> dict[str, list[dict[str, Any]]]:
    """Every model-level detector's result on every model, each run once per detector signature
    (key, parameters, seed and ``REVISION``) and cached in ``<zoo>/results.jsonl``."""
    cache = zoo / "results.jsonl"
    keys = factory_for("model")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    if cache.exists() and not fresh:
        for line in cache.read_text().splitlines():
            for model_id, sig, result in _cached(line):
                found[(model_id, sig)] = result
    done: dict[str, list[dict[str, Any]]] = {}
    with cache.open("a" if not fresh else "w") as fh:
        for e in models:
            model = _open(zoo / e["model"], nes) if as_macs else None
            budgets = _budgets(keys, seed, model, as_macs)
            sigs = {k: _signature(k, seed, nes, budgets.get(k), tag) for k in keys}
            todo = [k for k in keys if (e["id"], sigs[k]) not in found]
            if todo:
                model = model or _open(zoo / e["model"], nes)
                clean = load_npz(zoo / e["clean_data"], model.input_shape).subset(300, 0)
                for r in run_detectors(model, clean, todo, ScanConfig(seed=seed, params=budgets)):
                    found[(e["id"], sigs[r.key])] = {**r.to_dict(), "full_targets": r.evidence.get(
                        "ranking", r.target_classes)}
                    fh.write(json.dumps({"id": e["id"], "key": r.key, "signature": sigs[r.key],
                                         "result": found[(e["id"], sigs[r.key])]}) + "\n")
                    fh.flush()
                print(f"  scanned {e['id']:<14}" + " ".join(
                    f"{k}={found[(e['id'], sigs[k])]['score']:.2f}/{found[(e['id'], sigs[k])]['seconds']:.1f}s"
                    for k in todo), flush=True)
            done[e["id"]] = [found[(e["id"], sigs[k])] for k in keys]
    for rows in done.values():  # results cached before detectors published ``class_scores``
        for r in rows:
            r["evidence"].setdefault("class_scores", r["evidence"].get("anomaly_index", r["evidence"].get("robust_z")))
    return done


def _run_zoos(models: list[dict[str, Any]], fresh: bool, seed: int, nes: bool = False, as_macs: float | None = None,
              tag: str = "") -> dict[str, list[dict[str, Any]]]:
    """``_run_models`` for models of several zoos (``dir``; ``name``: the id within its zoo's cache)."""
    raw: dict[str, list[dict[str, Any]]] = {}
    for zoo in dict.fromkeys(e["dir"] for e in models):
        part = [e for e in models if e["dir"] == zoo]
        got = _run_models(zoo, [{**e, "id": e["name"]} for e in part], fresh, seed, nes, as_macs, tag)
        raw.update({e["id"]: got[e["name"]] for e in part})
    return raw


def _result(d: dict[str, Any], threshold: float) -> DetectionResult:
    flagged = d["score"] > threshold
    return DetectionResult(d["key"], d["score"], threshold, "suspicious" if flagged else "clean",
                           d["full_targets"] if flagged else [], {}, [], d["seconds"])


def _nc(raw: dict[str, list[dict[str, Any]]], model_id: str) -> dict[str, Any]:
    return next(r for r in raw[model_id] if r["key"] == NC)


def _joined(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The scanner's per-class agreement of cached result rows, as a cached row named ``key``."""
    joined = agreement([DetectionResult(r["key"], r["score"], r["threshold"], r["verdict"], r["target_classes"],
                                        r["evidence"], [], r["seconds"]) for r in rows])
    return None if joined is None else {**joined.to_dict(), "key": key, "full_targets": joined.evidence["ranking"]}


def _with_baseline_row(rows: list[dict[str, Any]], nc: dict[str, Any], base_l1: list[float]) -> list[dict[str, Any]]:
    """``rows`` as the scanner would give them had the ledger a clean earlier version with ``base_l1``."""
    evidence = {**nc["evidence"], "baseline_class_scores": baseline_index(
        np.asarray(nc["evidence"]["l1_norms"]), np.asarray(base_l1)).tolist()}
    return [{**r, "evidence": evidence} if r["key"] == NC else r for r in rows]


def _with_agreement(models: list[dict[str, Any]], raw: dict[str, list[dict[str, Any]]]) -> None:
    """Add the per-class agreement as the scanner computes it, without and with a clean earlier
    version in the ledger (stood in for by the nearest other clean model of the same architecture)."""
    for i, e in enumerate(models):
        rows = [r for r in raw[e["id"]] if r["key"] in factory_for("model")]
        peers = sorted((abs(j - i), m["id"]) for j, m in enumerate(models) if _peer(e, m, raw))
        earlier = _with_baseline_row(rows, _nc(raw, e["id"]), _nc(raw, peers[0][1])["evidence"]["l1_norms"]
                                     ) if peers else rows  # no clean peer: as if the ledger had none
        extra = [_joined(rows, AGREEMENT), _joined(earlier, AGREEMENT + "+baseline"), *_nc_checks(rows)]
        derived = (AGREEMENT, A2A, ISO)
        raw[e["id"]] = [r for r in raw[e["id"]] if not r["key"].startswith(derived)] + [r for r in extra if r]


def _peer(e: dict[str, Any], m: dict[str, Any], raw: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether clean model ``m`` may stand in for ``e``'s clean earlier version: same architecture, same class
    count, and in the zoos of digit subsets (``binary``, ``few``, ``ovr``) the same digits: an earlier version of
    a model has its task."""
    return (not m["backdoored"] and m["arch"] == e["arch"] and m["id"] != e["id"]
            and len(_nc(raw, m["id"])["evidence"]["l1_norms"]) == len(_nc(raw, e["id"])["evidence"]["l1_norms"])
            and m.get("digits") == e.get("digits"))


def _nc_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scanner's checks read off Neural Cleanse's result (all-to-all, isolation), as cached rows."""
    nc = [DetectionResult(r["key"], r["score"], r["threshold"], r["verdict"], r["target_classes"], r["evidence"],
                          [], r["seconds"]) for r in rows if r["key"] == NC]
    found = [all_to_all(nc), isolated_trigger(nc)]
    return [{**f.to_dict(), "full_targets": f.evidence.get("ranking", [])} for f in found if f is not None]


def _ledger_pairs(models: list[dict[str, Any]], raw: dict[str, list[dict[str, Any]]]) -> None:
    """The shipped verdict with a clean earlier version, over every (model, clean peer) pair."""
    flags: dict[bool, list[bool]] = {True: [], False: []}
    for e in models:
        rows = [r for r in raw[e["id"]] if r["key"] in factory_for("model")]
        for m in models:
            if not _peer(e, m, raw):
                continue
            with_base = _with_baseline_row(rows, _nc(raw, e["id"]), _nc(raw, m["id"])["evidence"]["l1_norms"])
            joined = _joined(with_base, AGREEMENT)
            verdict = combine([_result(r, REGISTRY[r["key"]].default_threshold) for r in rows]
                              + ([_result(joined, _default(AGREEMENT, joined))] if joined else [])
                              + [_result(c, _default(c["key"])) for c in _nc_checks(rows)])
            flags[bool(e["backdoored"])].append(verdict.backdoor_detected)
    print(f"\n== shipped verdict with a clean earlier version, over all {len(flags[True]) + len(flags[False])} "
          f"(model, clean peer of its architecture) pairs: TPR {np.mean(flags[True]):.3f}  "
          f"FPR {np.mean(flags[False]):.3f}")


def _metrics(models: list[dict[str, Any]], verdicts: dict[str, tuple[bool, list[int]]]) -> dict[str, float]:
    tp = sum(1 for e in models if e["backdoored"] and verdicts[e["id"]][0])
    fp = sum(1 for e in models if not e["backdoored"] and verdicts[e["id"]][0])
    pos, neg = sum(e["backdoored"] for e in models), sum(not e["backdoored"] for e in models)
    # an all-to-all backdoor has no one target: every class is one, so any named class is right
    hit = sum(1 for e in models if e["backdoored"] and verdicts[e["id"]][0] and (
        verdicts[e["id"]][1][:1] == [e["target"]] or e.get("attack", {}).get("all_to_all")))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / pos if pos else 0.0
    return {"TPR": rec, "FPR": fp / neg if neg else 0.0, "precision": prec, "recall": rec,
            "F1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0, "target_acc": hit / tp if tp else 0.0}


def _folds(models: list[dict[str, Any]]) -> dict[str, int]:
    """Calibration fold of every model: its zoo when there are several (leave one zoo out); else the
    zoo alternates clean / backdoored, so fold on pairs: each fold holds both kinds."""
    zoos = list(dict.fromkeys(e["dir"] for e in models))
    if len(zoos) > 1:
        return {e["id"]: zoos.index(e["dir"]) for e in models}
    return {e["id"]: (i // 2) % 2 for i, e in enumerate(models)}


def _thresholds(models: list[dict[str, Any]], raw: dict[str, list[dict[str, Any]]], keys: list[str],
                calibrated: bool) -> dict[str, dict[str, float]]:
    """Per model and detector: default threshold, or the FPR-5% quantile of the other fold's clean scores."""
    out: dict[str, dict[str, float]] = {}
    fold = _folds(models)
    for e in models:
        out[e["id"]] = {}
        for k in keys:
            base = k.split("+")[0]
            if not calibrated:
                out[e["id"]][k] = _default(base, next(r for r in raw[e["id"]] if r["key"] == k))
                continue
            other = [next(r for r in raw[m["id"]] if r["key"] == k)["score"]
                     for m in models if not m["backdoored"] and fold[m["id"]] != fold[e["id"]]]
            out[e["id"]][k] = float(np.quantile(other, 0.95, method="higher"))
    return out


def _default(key: str, row: dict[str, Any] | None = None) -> float:
    """The shipped threshold of ``key``; the agreement's depends on the class count of its ``row``."""
    base = key.split("+")[0]
    if base == AGREEMENT and row is not None:
        return agreement_bar(AGREEMENT_THRESHOLD, len(row["evidence"]["class_scores"]))
    derived = {AGREEMENT: AGREEMENT_THRESHOLD, A2A: A2A_THRESHOLD, ISO: ISO_THRESHOLD}
    return derived.get(base) or REGISTRY[base].default_threshold


def _ratio(rows: list[dict[str, Any]], keys: list[str]) -> float:
    """How far the most suspicious of ``keys`` is past its shipped threshold (1.0 = at it)."""
    return max(r["score"] / _default(r["key"], r) for r in rows if r["key"] in keys)


def _table(models: list[dict[str, Any]], raw: dict[str, list[dict[str, Any]]], calibrated: bool) -> None:
    keys = sorted({r["key"] for rs in raw.values() for r in rs})
    for rows in raw.values():  # a check a model's class count does not run (isolation under 5) never flags it
        rows += [{"key": k, "score": -np.inf, "full_targets": [], "seconds": 0.0, "evidence": {}}
                 for k in keys if k not in {r["key"] for r in rows} and k in (A2A, ISO)]
    thr = _thresholds(models, raw, keys, calibrated)
    rows: dict[str, dict[str, float]] = {}
    shipped: dict[str, tuple[bool, list[int]]] = {}
    fold = _folds(models)
    per: dict[str, dict[str, DetectionResult]] = {
        e["id"]: {r["key"]: _result(r, thr[e["id"]][r["key"]]) for r in raw[e["id"]]} for e in models}
    for k in keys:
        rows[k] = _metrics(models, {i: (d[k].flagged, d[k].target_classes) for i, d in per.items()})
    combos = (("combined (nc+mmbd)", [NC, "mmbd.v2"]), ("nc+mmbd+agreement", [NC, "mmbd.v2", AGREEMENT]),
              ("nc+mmbd+agreement+all-to-all", [NC, "mmbd.v2", AGREEMENT, A2A]),
              ("SHIPPED (+isolation)", [*DEFAULT_MODEL_DETECTORS, AGREEMENT, A2A, ISO]),
              ("SHIPPED, clean earlier version", [*DEFAULT_MODEL_DETECTORS, AGREEMENT + "+baseline", A2A, ISO]))
    for name, ks in combos:
        verdicts = {}
        fold = _folds(models)
        for e in models:
            if calibrated:  # one bar for the whole verdict (per-detector 5% bars would add up)
                bar = float(np.quantile([_ratio(raw[m["id"]], ks) for m in models
                                         if not m["backdoored"] and fold[m["id"]] != fold[e["id"]]], 0.95,
                                        method="higher"))
                ranked = sorted(raw[e["id"]], key=lambda r: -r["score"] / _default(r["key"], r))
                hit = _ratio(raw[e["id"]], ks) > bar
                verdicts[e["id"]] = (hit, next(r["full_targets"] for r in ranked if r["key"] in ks) if hit else [])
                continue
            v = combine([per[e["id"]][k] for k in ks if k in per[e["id"]]])
            verdicts[e["id"]] = (v.backdoor_detected, v.target_classes)
        rows[name] = _metrics(models, verdicts)
        if name.startswith("SHIPPED (") and len({e["dir"] for e in models}) > 1:
            shipped = verdicts
    fold_name = "other zoos'" if len(set(_folds(models).values())) > 1 else "other fold's"
    title = (f"thresholds calibrated on the {fold_name} clean models (FPR 5%; combined verdicts: one bar on the "
             "largest score / default threshold)") if calibrated else "default thresholds"
    print(f"\n== model-level detection, {title}; {sum(e['backdoored'] for e in models)} backdoored / "
          f"{sum(not e['backdoored'] for e in models)} clean")
    print(f"{'detector':<30}" + "".join(f"{c:>11}" for c in ("TPR", "FPR", "precision", "recall", "F1", "target_acc")))
    for k, m in rows.items():
        print(f"{k:<30}" + "".join(f"{m[c]:>11.3f}" for c in ("TPR", "FPR", "precision", "recall", "F1", "target_acc")))
    if shipped:
        zoos = dict.fromkeys(e["dir"] for e in models)
        print("SHIPPED per zoo: " + "  ".join(_per_zoo(models, shipped, zoo) for zoo in zoos))
        print("SHIPPED per attack kind: " + _per_kind(models, shipped))
        if not calibrated:
            print("SHIPPED false alarms: " + _named(models, shipped, per, backdoored=False))
            print("SHIPPED misses: " + _named(models, shipped, per, backdoored=True))


def _named(models: list[dict[str, Any]], verdicts: dict[str, tuple[bool, list[int]]],
           per: dict[str, dict[str, DetectionResult]], backdoored: bool) -> str:
    """The models the shipped verdict got wrong, each with its checks' largest scores over their bars."""
    wrong = [e["id"] for e in models if e["backdoored"] == backdoored and verdicts[e["id"]][0] != backdoored]

    def checks(model_id: str) -> str:
        ranked = sorted(per[model_id].values(), key=lambda r: -r.score / r.threshold if r.threshold else 0.0)
        return ", ".join(f"{_VERSION.sub('', r.key)} {r.score:.2f}/{r.threshold:.2f}" for r in ranked[:2]
                         if np.isfinite(r.score))
    return "  ".join(f"{i} ({checks(i)})" for i in wrong) or "none"


def _per_zoo(models: list[dict[str, Any]], verdicts: dict[str, tuple[bool, list[int]]], zoo: Path) -> str:
    bd = [verdicts[e["id"]][0] for e in models if e["dir"] == zoo and e["backdoored"]]
    clean = [verdicts[e["id"]][0] for e in models if e["dir"] == zoo and not e["backdoored"]]
    return f"{zoo.name} TPR {sum(bd)}/{len(bd)} FPR {sum(clean)}/{len(clean)}"


def _per_kind(models: list[dict[str, Any]], verdicts: dict[str, tuple[bool, list[int]]]) -> str:
    """Backdoors caught per attack kind (patch, blend, frame, ...; source-specific ones apart)."""
    caught: dict[str, list[bool]] = {}
    for e in models:
        if e["backdoored"]:
            attack = e.get("attack") or {}
            kind = str(attack.get("kind", "?")) + ("/source-specific" if attack.get("source") is not None else "")
            caught.setdefault(kind, []).append(verdicts[e["id"]][0])
    return "  ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(caught.items()))


def _scan_data(models: list[dict[str, Any]], seed: int = 0) -> None:
    tp = fp = fn = 0
    clean_flags, seconds = [], []
    for e in models:
        zoo = e["dir"]
        model = open_model(zoo / e["model"])
        with np.load(zoo / e["train_data"]) as npz:
            truth = set(npz["poison_idx"].tolist())
        data = load_npz(zoo / e["train_data"], model.input_shape)
        start = time.perf_counter()
        found = set(scan_training_data(model, data, ScanConfig(seed=seed)).suspicious_indices)
        seconds.append(time.perf_counter() - start)
        if e["backdoored"]:
            tp, fp, fn = tp + len(found & truth), fp + len(found - truth), fn + len(truth - found)
        else:
            clean_flags.append(len(found))
    print("\n== scan-data (poisoned training samples, micro-averaged over backdoored models)")
    print(f"precision {tp / max(tp + fp, 1):.3f}  recall {tp / max(tp + fn, 1):.3f}  "
          f"clean training sets with any flag: {sum(c > 0 for c in clean_flags)}/{len(clean_flags)} "
          f"(mean {np.mean(clean_flags) if clean_flags else 0:.1f} samples)  mean {np.mean(seconds):.2f}s per set")


def _timings(models: list[dict[str, Any]], raw: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n== timings (seconds per model; full scan = the default detectors {', '.join(DEFAULT_MODEL_DETECTORS)})")
    for arch in sorted({e["arch"] for e in models}):
        ids = [e["id"] for e in models if e["arch"] == arch]
        per = {k: [r["seconds"] for i in ids for r in raw[i] if r["key"] == k] for k in factory_for("model")}
        total = [sum(r["seconds"] for r in raw[i] if r["key"] in DEFAULT_MODEL_DETECTORS) for i in ids]
        print(f"{arch}: " + "  ".join(f"{k} mean {np.mean(v):.2f} max {np.max(v):.2f}" for k, v in per.items())
              + f"  full scan mean {np.mean(total):.2f} max {np.max(total):.2f}")
    for arch in sorted({e["arch"] for e in models}):
        e = next((m for m in models if m["arch"] == arch and m["backdoored"]), None)
        if e is None:
            continue
        model = open_model(e["dir"] / e["model"])
        train = load_npz(e["dir"] / e["train_data"], model.input_shape)
        per = {k: run_detectors(model, train, [k], ScanConfig())[0].seconds for k in factory_for("data")}
        print(f"data-level on {e['id']} ({len(train)} samples): "
              + "  ".join(f"{k} {s:.2f}s" for k, s in per.items()))
    for arch in sorted({e["arch"] for e in models}):
        e = next(m for m in models if m["arch"] == arch)
        model = open_model(e["dir"] / e["model"])
        clean = load_npz(e["dir"] / e["clean_data"], model.input_shape)
        guard = StripGuard().fit(model, clean.x)
        start = time.perf_counter()
        guard.entropy(clean.x)
        ms = 1000 * (time.perf_counter() - start) / len(clean)
        print(f"STRIP guard on {arch}: {ms:.3f} ms/input amortised ({guard.n_perturbations} perturbations)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, nargs="+", default=[Path("benchmarks/zoo/out")],
                    help="one zoo, or several to pool (leave-one-zoo-out calibration)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached detector results")
    ap.add_argument("--only", default="", help="restrict to model ids starting with this")
    ap.add_argument("--skip-data", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="detector seed (judge changes over several)")
    ap.add_argument("--nes", action="store_true", help="estimate gradients (NES) as for graphs the tape cannot "
                                                       "differentiate; cached apart from exact runs")
    ap.add_argument("--as-macs", type=float, default=None,
                    help="scan every model as a model of this many multiply-accumulates per sample is scanned "
                         "(its budgets scaled down by its own cost over this; e.g. 5.6e8, a CIFAR ResNet-18; cached "
                         "apart)")
    ap.add_argument("--tag", default="", help="a label cached with the results: code being tried out, kept apart")
    args = ap.parse_args(argv)
    threadpool_limits(1)  # numpy's BLAS started with a thread per core; two runs side by side oversubscribe
    several = len(args.zoo) > 1
    models = [{**e, "dir": zoo, "name": e["id"], "id": f"{zoo.name}/{e['id']}" if several else e["id"]}
              for zoo in args.zoo for e in json.loads((zoo / "manifest.json").read_text())["models"]
              if e["id"].startswith(args.only)]
    failed = [e["id"] for e in models if e["backdoored"] and e.get("attack_success_rate", 1.0) < MIN_ASR]
    if failed:  # the poisoning did not plant a working backdoor: neither a positive nor a negative
        print(f"left out (attack success rate < {MIN_ASR}): {', '.join(failed)}")
        models = [e for e in models if e["id"] not in failed]
    raw = _run_zoos(models, args.fresh, args.seed, args.nes, args.as_macs, args.tag)
    _with_agreement(models, raw)
    _table(models, raw, calibrated=False)
    if any(not e["backdoored"] for e in models):  # calibration needs clean models (an all-backdoored zoo has none)
        _ledger_pairs(models, raw)
        _table(models, raw, calibrated=True)
    if not args.skip_data:
        _scan_data(models, args.seed)
    _timings(models, raw)


if __name__ == "__main__":
    main()
