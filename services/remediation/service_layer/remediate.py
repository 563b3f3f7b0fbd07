"""Use case: remediate one ONNX classifier with Fine-Pruning; pure data in, report out.

Errors (bad paths, unreadable npz, unusable model or trigger) raise ``ValueError`` subclasses with a
message that names the problem; the caller maps them to exit codes or failure events.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from services.remediation.adapters.onnx_surgery import (
    Site,
    SurgeryError,
    apply_masks,
    check_exportable,
    export,
    find_site,
    keep_masks,
)
from services.remediation.adapters.tape_training import TapeModel
from services.remediation.domain.fine_pruning import (
    RemediationConfig,
    progressive_prune,
    split_indices,
    unit_order,
)
from services.remediation.domain.report import PrunedLayer, RemediationReport
from services.remediation.domain.trigger import Trigger, attack_success_rate, infer_target, untargeted_success_rate
from services.scanner.adapters.datasets import load_npz
from services.scanner.adapters.onnx_model import OnnxModel, open_model
from services.scanner.domain.model import Dataset
from shared.files import sha256_file

Arr = np.ndarray[Any, Any]
Progress = Callable[[str, int, int], None]


class RemediationError(ValueError):
    """The model cannot be remediated (for example its scores cannot be trained through)."""


def sha256(path: Path) -> str:
    """Bare hex digest for the report, streamed by the shared helper (models can be large)."""
    return sha256_file(path).removeprefix("sha256:")


def _asr(model: OnnxModel, trigger: Trigger | None, x: Arr, y: Arr, target: int | None) -> float | None:
    if trigger is not None and trigger.all_to_all:
        stamped = np.argmax(model.predict(trigger.apply(x)), axis=1)
        return untargeted_success_rate(np.argmax(model.predict(x), axis=1), stamped, y)
    if trigger is None or target is None:
        return None
    return attack_success_rate(np.argmax(model.predict(trigger.apply(x)), axis=1), y, target)


def remediate_model(model_path: Path, clean_path: Path, out_path: Path, config: RemediationConfig, *,
                    trigger: Trigger | None = None, eval_trigger: Trigger | None = None,
                    progress: Progress | None = None) -> RemediationReport:
    """Prune and fine-tune ``model_path`` on ``clean_path``; write the result to ``out_path``.

    Args:
        model_path: ONNX classifier with one float input [N, *input_shape] and [N, K] scores.
        clean_path: .npz with clean ``x`` [N, *input_shape] and ``y`` [N]; split into fine-tuning and
            held-out parts (``config.holdout_fraction``); figures in the report are on the held-out part.
        out_path: Where the remediated ONNX model goes (same inputs and outputs as the parent).
        config: Budgets and optimiser settings.
        trigger: Known or reversed trigger; guides pruning, drives unlearning and measures ASR. An
            all-to-all trigger (``trigger.all_to_all``) has no target: its ASR is the share of inputs it
            moves off their true class.
        eval_trigger: Measures ASR instead of ``trigger`` (benchmarks: remediate blind, measure true).
        progress: Called as ``progress(stage, done, total)``.

    Returns:
        The report (pruned units, accuracy and ASR before/after, digests, timings).
    """
    t0, timings = time.perf_counter(), {}
    tell = progress or (lambda stage, done, total: None)
    parent, data = _open(model_path, clean_path, out_path, (trigger, eval_trigger or trigger))
    tune, hold = split_indices(data.y, config.holdout_fraction, config.seed)
    xt, yt, xh, yh = data.x[tune], data.y[tune], data.x[hold], data.y[hold]
    site = find_site(parent.model, config.layer)
    tm = TapeModel(parent.model, parent.output_name)
    if trigger is not None and trigger.target is None and not trigger.all_to_all:
        trigger = dataclasses.replace(trigger, target=infer_target(tm.predict(trigger.apply(xt)), parent.num_classes))
    pruned = _prune(tm, site, xt, yt, trigger, config, tell)
    timings["prune_s"] = time.perf_counter() - t0
    masks = keep_masks(tm.params, site, pruned)
    params = tm.finetune(apply_masks(tm.params, masks), masks, xt, yt, epochs=config.epochs, lr=config.lr,
                         batch_size=config.batch_size, seed=config.seed, trigger=trigger,
                         refresh_steps=config.refresh_steps, mask_growth=config.mask_growth,
                         unlearn_fraction=config.unlearn_fraction, distill=config.distill,
                         temperature=config.temperature, progress=tell)
    timings["finetune_s"] = time.perf_counter() - t0 - timings["prune_s"]
    fixed = OnnxModel(export(parent.model, params, out_path), parent.output_name)
    measure = eval_trigger or trigger
    target = _measured_target(parent, measure, xt)
    timings["total_s"] = time.perf_counter() - t0
    return RemediationReport(
        model=str(model_path), parent_sha256=sha256(model_path), output=str(out_path),
        output_sha256=sha256(out_path),
        pruned=PrunedLayer(site.activation, site.kind, site.units, sorted(pruned),
                           "trigger_gain" if trigger is not None else "dormant"),
        clean_accuracy_before=_accuracy(parent, xh, yh), clean_accuracy_after=_accuracy(fixed, xh, yh),
        asr_before=_asr(parent, measure, xh, yh, target), asr_after=_asr(fixed, measure, xh, yh, target),
        target=target, trigger_source="given" if trigger is not None else None,
        unlearning=trigger is not None and config.unlearn_fraction > 0, n_tune=len(tune), n_holdout=len(hold),
        all_to_all=measure is not None and measure.all_to_all,
        max_accuracy_drop=config.max_accuracy_drop, max_asr=config.max_asr, seed=config.seed,
        timings={k: round(v, 4) for k, v in timings.items()}, config=dataclasses.asdict(config))


def _measured_target(parent: OnnxModel, measure: Trigger | None, x: Arr) -> int | None:
    """The class the measuring trigger attacks: its own, or the one it pushes most inputs to; none for
    an all-to-all trigger."""
    if measure is None or measure.all_to_all:
        return None
    if measure.target is not None:
        return measure.target
    return infer_target(np.argmax(parent.predict(measure.apply(x)), axis=1), parent.num_classes)


def _open(model_path: Path, clean_path: Path, out_path: Path,
          triggers: tuple[Trigger | None, ...]) -> tuple[OnnxModel, Dataset]:
    if out_path.resolve() == model_path.resolve():
        raise RemediationError(f"refusing to overwrite the parent model {model_path}; choose another --out")
    parent = open_model(model_path)
    try:
        check_exportable(parent.model)
    except SurgeryError as exc:
        raise RemediationError(f"{model_path} {exc}") from exc
    data = load_npz(clean_path, parent.input_shape, parent.num_classes)
    for t in triggers:
        if t is not None:
            t.check_shape(parent.input_shape)
            if t.target is not None and not 0 <= t.target < parent.num_classes:
                raise RemediationError(f"trigger target {t.target} is not a class of {model_path} "
                                       f"(0..{parent.num_classes - 1})")
    if parent.outputs_probabilities and parent.tape is not None and not parent.tape.applied_softmax:
        raise RemediationError("the model outputs probabilities without a final Softmax; cannot train through it")
    return parent, data


def _prune(tm: TapeModel, site: Site, x: Arr, y: Arr, trigger: Trigger | None, config: RemediationConfig,
           tell: Progress) -> list[int]:
    """Measure unit activations on the fine-tuning split and prune within the pruning budget."""
    tell("measure", 0, 1)
    clean_act = tm.unit_activation(x, site.activation)
    trig_act = tm.unit_activation(trigger.apply(x), site.activation) if trigger is not None else None
    tell("measure", 1, 1)

    def pruned_accuracy(units: Arr) -> float:
        tell("prune", len(units), site.units)
        return tm.accuracy(x, y, apply_masks(tm.params, keep_masks(tm.params, site, [int(u) for u in units])))

    return progressive_prune(unit_order(clean_act, trig_act), pruned_accuracy, tm.accuracy(x, y),
                             config.prune_accuracy_drop, int(config.max_prune_fraction * site.units))


def _accuracy(model: OnnxModel, x: Arr, y: Arr) -> float:
    return float(np.mean(np.argmax(model.predict(x), axis=1) == y))
