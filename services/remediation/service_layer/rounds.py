"""Remediation without the true trigger: the scanner's Neural Cleanse reverses it, remediation removes
it, and the result is scanned and remediated again for the same class (two rounds by default: one
round left ASR at 0.19 on the zoo, two at 0.017 — see benchmarks/validate_remediation.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from services.remediation.domain.fine_pruning import RemediationConfig, split_indices
from services.remediation.domain.report import RemediationReport
from services.remediation.domain.trigger import Trigger
from services.remediation.service_layer.remediate import Progress, remediate_model
from services.scanner.domain.all_to_all import all_to_all
from services.scanner.domain.detectors.base import UNIVERSAL
from services.scanner.domain.detectors.neural_cleanse import NeuralCleanse, reverse_triggers, universal_trigger
from services.scanner.domain.input_layout import trigger_in_model_layout, view_for_scan
from services.scanner.domain.isolation import isolated_trigger
from services.scanner.domain.model import Dataset
from services.scanner.service_layer.scan import open_model_and_data


class NoUniversalTrigger(ValueError):
    """The model's predictions leave no universal search to run (one class holds most of them)."""


def reversed_trigger(model_path: Path, clean: Path, cfg: RemediationConfig, seconds: float,
                     target: int | None = None, all_to_all_trigger: bool = False) -> Trigger:
    """Neural Cleanse's trigger, reversed on the fine-tuning split only (never the held-out half).

    Which trigger, as the scanner would name it: an isolated smallest trigger's class (isolation check);
    else Neural Cleanse's top-ranked class when it flags one; else, when the all-to-all check flags the
    model, the universal trigger (an all-to-all trigger: unlearning moves no input to any one class);
    else the top-ranked class. A later round keeps chasing what the first found: ``target``, or a new
    universal trigger (``all_to_all_trigger``). A channels-last image model is searched as the scanner
    searches it (as [C, H, W]) and its trigger comes back in the model's own layout, which is what
    fine-tuning stamps."""
    model, data = open_model_and_data(model_path, clean)
    tune, _ = split_indices(data.y, cfg.holdout_fraction, cfg.seed)
    seen, tuning, layout = view_for_scan(model, Dataset(data.x[tune], data.y[tune]))
    nc = NeuralCleanse(max_seconds=seconds, max_samples=100, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if all_to_all_trigger:
        found = universal_trigger(seen, tuning.subset(nc.max_samples, nc.seed), nc, rng)
        if isinstance(found, float):
            raise NoUniversalTrigger(f"no universal trigger to search: one class holds {1 - found:.0%} of the "
                                     "predictions")
        return _in_model_layout(found[0], found[1], None, layout)
    if target is not None:
        x = tuning.subset(nc.max_samples, nc.seed).x
        masks, patterns, _, _ = reverse_triggers(seen, x, nc, rng)
        return _in_model_layout(masks[target], patterns[target], target, layout)
    res = nc.fit(seen, tuning).result()
    isolated = isolated_trigger([res])  # the scanner names an isolated smallest trigger's class: chase that one
    universal = all_to_all([res])
    if isolated is not None and isolated.flagged:
        top = isolated.target_classes[0]
    elif not res.flagged and universal is not None and universal.flagged and UNIVERSAL in res.triggers:
        mask, pattern = res.triggers[UNIVERSAL]
        return _in_model_layout(mask, pattern, None, layout)
    else:
        top = int(res.evidence["ranking"][0])
    mask, pattern = res.triggers[top]
    return _in_model_layout(mask, pattern, top, layout)


def _in_model_layout(mask: np.ndarray, pattern: np.ndarray, target: int | None, layout: str) -> Trigger:
    """The trigger in the model's own layout; no target: the universal (all-to-all) trigger."""
    mask, pattern = trigger_in_model_layout(np.clip(mask, 0.0, 1.0), pattern, layout)
    return Trigger(mask, pattern, target, all_to_all=target is None)


def remediate_in_rounds(model_path: Path, clean_path: Path, work_dir: Path, cfg: RemediationConfig, *,
                        rounds: int = 2, nc_seconds: float = 30.0,
                        progress: Progress | None = None) -> tuple[Path, list[RemediationReport]]:
    """Scan → remediate, ``rounds`` times on the result; returns the final model and each round's report."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds!r}: need at least 1")
    work_dir.mkdir(parents=True, exist_ok=True)
    current, reports = model_path, list[RemediationReport]()
    target: int | None = None
    universal = False
    for k in range(rounds):
        if progress is not None:
            progress(f"round {k + 1}: reverse trigger", 0, 1)
        try:
            guide = reversed_trigger(current, clean_path, cfg, nc_seconds, target, universal)
        except NoUniversalTrigger:
            if not reports:
                raise
            break  # the last round's model stands: a later round has nothing left to chase
        if progress is not None:
            progress(f"round {k + 1}: reverse trigger", 1, 1)
        target, universal = guide.target, guide.all_to_all
        out = work_dir / f"round{k + 1}.onnx"
        reports.append(remediate_model(current, clean_path, out, cfg, trigger=guide, progress=progress))
        current = out
    return current, reports


def overall_report(model_path: Path, out_path: Path, reports: list[RemediationReport]) -> RemediationReport:
    """The rounds as one remediation of ``model_path`` into ``out_path``: the first round's "before", the
    last round's "after" (its ASR against the trigger reversed on the model it remediated)."""
    first, last = reports[0], reports[-1]
    return dataclasses.replace(last, model=str(model_path), parent_sha256=first.parent_sha256, output=str(out_path),
                               trigger_source="reversed",
                               clean_accuracy_before=first.clean_accuracy_before, asr_before=first.asr_before,
                               timings={"total_s": round(sum(r.timings.get("total_s", 0.0) for r in reports), 4),
                                        "rounds": len(reports)})
