"""Use cases: scan a model (model-level detectors) and validate training data (data-level).

Called by the CLI and, later, the Kafka scan worker. I/O happens through adapters passed in or
opened here from paths; the domain only sees ``ModelHandle`` and ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from services.scanner.adapters.datasets import DEFAULT_MAX_ARRAY_BYTES, DataError, check_fits, load_npz
from services.scanner.adapters.onnx_model import OnnxModel, ShapeMismatch, open_model
from services.scanner.domain.all_to_all import DEFAULT_THRESHOLD as A2A_THRESHOLD
from services.scanner.domain.all_to_all import KEY as ALL_TO_ALL
from services.scanner.domain.all_to_all import all_to_all
from services.scanner.domain.clean_set import (
    clean_sample_cap,
    few_inputs_note,
    low_span_note,
    missing_classes_note,
    span_factor,
    span_ratio,
    threshold_factor,
)
from services.scanner.domain.detectors import REGISTRY, create
from services.scanner.domain.detectors.base import DetectionResult, Level
from services.scanner.domain.fusion import DEFAULT_THRESHOLD as AGREEMENT_THRESHOLD
from services.scanner.domain.fusion import KEY as AGREEMENT
from services.scanner.domain.fusion import agreement
from services.scanner.domain.input_layout import layout_note, view_for_scan
from services.scanner.domain.isolation import DEFAULT_THRESHOLD as ISOLATION_THRESHOLD
from services.scanner.domain.isolation import KEY as ISOLATED
from services.scanner.domain.isolation import isolated_trigger
from services.scanner.domain.model import Dataset, ModelHandle
from services.scanner.domain.policy import Verdict, VerdictPolicy, combine

DEFAULT_MODEL_DETECTORS = ("neural_cleanse.v2", "mmbd.v2", "dormant_features.v1")
DEFAULT_DATA_DETECTORS = ("trigger_response.v2", "label_consistency.v1", "strip.v1", "joint_split.v1",
                          "all_to_all_poison.v1", "stamped_trigger.v1")
# model-level scores fitted to the clean inputs (MM-BD takes only their range)
READS_CLEAN_INPUTS = ("neural_cleanse.v2", "dormant_features.v1")
Progress = Callable[[str, int, int], None]  # (detector key, done, total)


@dataclass(frozen=True)
class ScanConfig:
    """Which detectors run, with what parameters and thresholds; plain data so it can come from YAML."""

    detectors: Sequence[str] = ()
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 0
    max_clean_samples: int = 300  # at least CALIBRATED_PER_CLASS x classes are kept (many-class models)
    input_layout: str = "auto"  # of a 3-D input: "auto", "channels_first" or "channels_last"
    budget_scale: float = 1.0  # times the default work budgets of the trigger searches (large models)
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES  # largest x or y an .npz may declare (read before loading)
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)


def resolve(names: Sequence[str], level: Level) -> list[str]:
    """Full keys for requested detector names; unknown or wrong-level names raise ``ValueError``."""
    keys = []
    for name in names:
        match = [k for k in REGISTRY if k == name or k.split(".")[0] == name]
        if not match:
            raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(REGISTRY))}")
        if REGISTRY[match[0]].level != level:
            raise ValueError(f"detector {match[0]!r} works on {REGISTRY[match[0]].level} level, not {level}")
        keys.append(match[0])
    return keys


def run_detectors(model: ModelHandle, data: Dataset, keys: Sequence[str], config: ScanConfig,
                  progress: Progress | None = None) -> list[DetectionResult]:
    results = []
    for n, key in enumerate(keys):
        if progress:
            progress(key, n, len(keys))
        params = {"seed": config.seed, **dict(config.params.get(key, {}))}
        results.append(create(key, **params).fit(model, data).result())
    if progress:
        progress("done", len(keys), len(keys))
    return results


class BaselineMismatch(ValueError):
    """The baseline's per-class trigger sizes are for another number of classes than the model has."""

    def __init__(self, baseline_classes: int, model_classes: int) -> None:
        super().__init__(f"the baseline has {baseline_classes} classes, the model {model_classes}: a baseline "
                         f"must be a report of an earlier version of the same model")
        self.baseline_classes, self.model_classes = baseline_classes, model_classes


def _check_baseline(config: ScanConfig, num_classes: int) -> None:
    """Refuse a baseline for another class count before the trigger search, not after it."""
    baseline = config.params.get("neural_cleanse.v2", {}).get("baseline_l1")
    if baseline is not None and len(baseline) != num_classes:
        raise BaselineMismatch(len(baseline), num_classes)


def scan_model(model: ModelHandle, clean: Dataset, config: ScanConfig | None = None,
               progress: Progress | None = None) -> Verdict:
    """Model-level scan: is there a backdoor, which target classes, how confident."""
    config = config or ScanConfig()
    keys = resolve(config.detectors or DEFAULT_MODEL_DETECTORS, "model")
    _check_baseline(config, model.num_classes)
    model, clean, layout, prepared = _prepare(model, clean, config)
    _check_responsive(model, clean)
    data = clean.subset(clean_sample_cap(config.max_clean_samples, model.num_classes), config.seed)
    span = span_ratio(data.x)
    raised = _with_budget(_raise_bars(config, keys, threshold_factor(data.y) * span_factor(span)), keys)
    results = run_detectors(model, data, keys, raised, progress)
    prepared += filter(None, [_budget_note(results, raised)])
    joined = agreement(results, float(raised.params[AGREEMENT]["threshold"]))
    universal = all_to_all(results, float(raised.params[ALL_TO_ALL]["threshold"]))
    isolated = isolated_trigger(results, float(raised.params[ISOLATED]["threshold"]))
    verdict = combine(results + [r for r in (joined, universal, isolated) if r is not None], config.policy)
    catch_all = next((r.evidence["catch_all_note"] for r in results if r.evidence.get("catch_all_note")), None)
    notes = [*prepared, *filter(None, [few_inputs_note(data.y), low_span_note(span),
                                       missing_classes_note(data.y, model.num_classes), catch_all])]
    return replace(verdict, notes=[*verdict.notes, *notes], input_layout=layout)


BUDGETED = ("neural_cleanse.v2", "mmbd.v2", "dormant_features.v1")  # detectors whose work is sized by ``budget_macs``


def _with_budget(config: ScanConfig, keys: Sequence[str]) -> ScanConfig:
    """``config`` with the budgeted detectors' default work budgets times ``config.budget_scale`` (a
    budget the caller set is kept as given)."""
    if not config.budget_scale > 0:
        raise ValueError(f"budget_scale={config.budget_scale}: must be > 0")
    if config.budget_scale == 1.0:
        return config
    params = {k: dict(v) for k, v in config.params.items()}
    for key in (k for k in keys if k in BUDGETED):
        entry = params.setdefault(key, {})
        default = REGISTRY[key](seed=config.seed).get_params().get("budget_macs")
        if entry.get("budget_macs") is None and default is not None:
            entry["budget_macs"] = float(default) * config.budget_scale
    return replace(config, params=params)


def _budget_note(results: Sequence[DetectionResult], config: ScanConfig) -> str | None:
    """A line for the verdict when the work budget cut Neural Cleanse's trigger search short (a costly
    model): fewer steps or smaller batches than a small model gets, so a weaker search."""
    nc = next((r for r in results if r.key == "neural_cleanse.v2"), None)
    if nc is None or not nc.evidence.get("search"):
        return None
    search = nc.evidence["search"]
    full = REGISTRY[nc.key](seed=config.seed).get_params() | dict(config.params.get(nc.key, {}))
    steps, batch = int(search.get("steps", 0)), int(search.get("batch_size", 0))
    if steps >= int(full["steps"]) and batch >= int(full["batch_size"]):
        return None
    return (f"the model is costly: the work budget cut the trigger search to {steps} steps of {batch} inputs per "
            f"class (a small model gets {full['steps']} of {full['batch_size']}), so detection is weaker; "
            f"`bdguard scan --budget 4` gives the searches four times the work (and time)")


def _prepare(model: ModelHandle, data: Dataset, config: ScanConfig) -> tuple[ModelHandle, Dataset, str, list[str]]:
    """The model and data as the detectors see them (a channels-last image transposed), the layout, and
    the notes the verdict carries about them (e.g. a freed batch dim); refuses non-finite outputs."""
    notes = list(getattr(model, "notes", []))
    shape = model.input_shape
    model, data, layout = view_for_scan(model, data, config.input_layout)
    accuracy_note = _check_clean_outputs(model, data)
    return model, data, layout, [*notes, *filter(None, [layout_note(shape, layout), accuracy_note])]


class UnscannableModel(ValueError):
    """The model's outputs on the clean inputs cannot be read (NaN, or the same for every input)."""


LOW_ACCURACY = 0.5  # of the clean inputs, below which the data is probably not what the model expects


def _check_clean_outputs(model: ModelHandle, data: Dataset, n: int = 256) -> str | None:
    """Refuse a model that gives NaN or infinite scores on clean inputs (every index would be NaN, and
    NaN is never over a threshold: it would pass as clean); a note when it gets few clean inputs right,
    the mark of data preprocessed otherwise than the model expects (range, normalisation, layout)."""
    probs = model.predict(data.x[:n])
    bad = int((~np.isfinite(probs).all(axis=1)).sum())
    if bad:
        raise UnscannableModel(f"the model gives NaN or infinite outputs on {bad} of the first {min(n, len(data))} "
                               f"clean inputs; it cannot be scanned (check its input range and preprocessing)")
    if len(probs) > 1 and not np.ptp(probs, axis=0).any():  # e.g. a Softmax over one column: always 1
        raise UnscannableModel(f"the model gives the same output for all of the first {len(probs)} clean inputs; "
                               f"it tells no classes apart and cannot be scanned")
    accuracy = float(np.mean(np.argmax(probs, axis=1) == data.y[:n]))
    if accuracy >= LOW_ACCURACY:
        return None
    return (f"the model labels only {accuracy:.0%} of the clean inputs as the data does: check that they are "
            f"preprocessed as the model expects (value range, normalisation, layout) and labelled with its "
            f"class indices; the verdict is unreliable otherwise")


# A smooth model's outputs move under any edit of a thousandth of the data's range (float32 resolves it); a tree
# ensemble's stay put unless a value sits on a split threshold (digits on a grid of 16 levels: 26% of the edits
# moved a random forest's outputs)
STATIC_SHARE = 0.5
PROBE_SCALE = 0.001


def _check_responsive(model: ModelHandle, data: Dataset, n: int = 64, probes: int = 4) -> None:
    """Refuse a model-level scan of a model whose outputs do not move under small edits of its inputs (a tree
    ensemble: its probabilities are constant between split thresholds). Its gradients are zero almost everywhere,
    so trigger searches and margin ascent have nothing to follow and their indices are noise (a clean random
    forest on digits scored 15.8 on Neural Cleanse's bar of 4.3). Models with exact gradients are not probed."""
    if model.exact_gradients or len(data) == 0:
        return
    x = data.x[:n]
    scale = PROBE_SCALE * max(float(np.ptp(x)), 1e-6)
    edited = x[None] + scale * np.random.default_rng(0).standard_normal((probes, *x.shape)).astype(x.dtype)
    out = model.predict(edited.reshape(-1, *x.shape[1:]).astype(np.float32)).reshape(probes, len(x), -1)
    still = float(np.all(out == model.predict(x)[None], axis=-1).mean())
    if still >= STATIC_SHARE:
        raise UnscannableModel(
            f"the model's outputs do not change under {still:.0%} of small random edits of the clean inputs (a "
            f"piecewise-constant model, such as a tree ensemble): trigger searches follow gradients, which are zero "
            f"almost everywhere here, so a model-level scan would report noise; check its training data with "
            f"`bdguard scan-data` instead")


def _raise_bars(config: ScanConfig, keys: Sequence[str], factor: float) -> ScanConfig:
    """``config`` with the bars of the detectors that read clean inputs (and of the checks read off them:
    agreement, all-to-all, isolation) times ``factor`` (few clean inputs, clean data of a low span ratio);
    thresholds the caller set are kept as given (see :mod:`..domain.clean_set`)."""
    params = {k: dict(v) for k, v in config.params.items()}
    derived = [(AGREEMENT, AGREEMENT_THRESHOLD), (ALL_TO_ALL, A2A_THRESHOLD), (ISOLATED, ISOLATION_THRESHOLD)]
    for key, default in [*((k, REGISTRY[k].default_threshold) for k in keys if k in READS_CLEAN_INPUTS), *derived]:
        entry = params.setdefault(key, {})
        if entry.get("threshold") is None:
            entry["threshold"] = default * factor
    return replace(config, params=params)


def scan_training_data(model: ModelHandle, data: Dataset, config: ScanConfig | None = None,
                       progress: Progress | None = None) -> Verdict:
    """Data-level scan: which training samples look poisoned (``suspicious_indices``)."""
    config = config or ScanConfig()
    keys = resolve(config.detectors or DEFAULT_DATA_DETECTORS, "data")
    model, data, layout, notes = _prepare(model, data, config)
    verdict = combine(run_detectors(model, data, keys, config, progress), config.policy, data.y.tolist())
    return replace(verdict, notes=[*verdict.notes, *notes], input_layout=layout)


def open_model_and_data(model_path: Path, data_path: Path, output: str | None = None, *,
                        max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> tuple[OnnxModel, Dataset]:
    """The model and data of a scan, checked against each other; the data's sample shape fills input dims
    the graph leaves symbolic (an export with dynamic height and width)."""
    data = load_npz(data_path, max_array_bytes=max_array_bytes)
    try:
        model = open_model(model_path, output, sample_shape=tuple(data.x.shape[1:]))
    except ShapeMismatch as exc:
        s, hint = exc.sample, ""
        if len(s) == 3 and exc.expected == (s[2], s[0], s[1]):
            hint = " (channels-last? the model takes channels-first)"
        elif data.x.shape == exc.expected:
            hint = " (one sample without its batch dim? x[None] adds it)"
        raise DataError(f"x in {data_path} does not fit {model_path}: {exc}{hint}") from exc
    return model, check_fits(data, data_path, model.input_shape, model.num_classes)


def scan_model_file(model_path: Path, clean_path: Path, config: ScanConfig | None = None, output: str | None = None,
                    progress: Progress | None = None) -> Verdict:
    return _scan_files(scan_model, model_path, clean_path, config, output, progress)


def scan_data_file(model_path: Path, data_path: Path, config: ScanConfig | None = None, output: str | None = None,
                   progress: Progress | None = None) -> Verdict:
    return _scan_files(scan_training_data, model_path, data_path, config, output, progress)


def _scan_files(scan: Callable[[ModelHandle, Dataset, ScanConfig, Progress | None], Verdict], model_path: Path,
                data_path: Path, config: ScanConfig | None, output: str | None, progress: Progress | None) -> Verdict:
    """``scan`` on the model and data files, checked against each other; an unscannable model is named."""
    config = config or ScanConfig()
    model, data = open_model_and_data(model_path, data_path, output, max_array_bytes=config.max_array_bytes)
    try:
        return scan(model, data, config, progress)
    except UnscannableModel as exc:
        raise UnscannableModel(f"{model_path}: {exc}") from exc
