"""``bdguard scan`` and ``bdguard scan-data``: exit 0 clean, 1 backdoor/suspicious found, 2 error."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.scanner.adapters.datasets import DataError
from services.scanner.adapters.onnx_model import ModelError
from services.scanner.adapters.reports import (
    baseline_l1,
    report_dict,
    write_html,
    write_json,
    write_sarif,
    write_triggers,
)
from services.scanner.config import ScannerSettings
from services.scanner.domain.detectors.base import Level, factory_for
from services.scanner.domain.policy import Verdict
from services.scanner.domain.progress import listening
from services.scanner.service_layer.scan import (
    BaselineMismatch,
    ScanConfig,
    resolve,
    scan_data_file,
    scan_model_file,
)
from shared.files import output_problem, printable

EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
_ERRORS = (ModelError, DataError, ValueError, KeyError, OSError)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """Rich progress on stderr, one bar for the detectors and one for the steps of the current one (a
    trigger search on a large model runs for minutes); plain lines when there is no TTY (CI=true, pipes)."""
    console = Console(stderr=True)
    live = console.is_terminal and not os.environ.get("CI")
    if not live:
        yield lambda key, done, total: console.print(f"[{done}/{total}] {label}: {key}", highlight=False)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=1)
        steps = bar.add_task("  steps", total=1, visible=False)

        def update(key: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label}: {key}", completed=done, total=total)
            bar.update(steps, visible=False)

        def step(stage: str, done: int, total: int) -> None:
            bar.update(steps, description=f"  {stage}", completed=done, total=total, visible=True)

        with listening(step):
            yield update


def _detector_names(option: str | None, level: Level) -> list[str]:
    """The names ``--detectors`` gives ([] when not given: the defaults); one that names none is refused, not
    read as the defaults."""
    if option is None:
        return []
    names = [d.strip() for d in option.split(",") if d.strip()]
    if not names:
        raise ValueError(f"--detectors {option!r} names no detector; valid keys: {', '.join(factory_for(level))}")
    return names


def _config(detectors: str | None, seed: int, baseline: Path | None = None, layout: str = "auto",
            budget: float = 1.0, level: Level = "model") -> ScanConfig:
    names = _detector_names(detectors, level)
    if baseline is not None and names and "neural_cleanse.v2" not in resolve(names, level):
        raise ValueError(f"--baseline {printable(baseline)} is read by neural_cleanse only, which --detectors "
                         f"{detectors!r} leaves out; add it or drop --baseline")
    params = {"neural_cleanse.v2": {"baseline_l1": baseline_l1(baseline)}} if baseline else {}
    return ScanConfig(detectors=names, seed=seed, params=params, input_layout=layout.replace("-", "_"),
                      budget_scale=budget, max_array_bytes=_max_array_bytes())


def _max_array_bytes() -> int:
    """The scanner's cap on an array loaded from an .npz (``BDGUARD_SCANNER_MAX_ARRAY_BYTES``); a setting that
    does not parse is one line naming it, not pydantic's multi-line report."""
    try:
        return int(ScannerSettings().max_array_bytes)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"BDGUARD_SCANNER_{'_'.join(map(str, first['loc'])).upper()}: {first['msg']}") from exc


_LAYOUT_HELP = ("layout of an image input: auto (channels-last when its last axis has 1, 3 or 4 values and "
                "its first does not), channels-first [C, H, W] or channels-last [H, W, C]")


def _internal(exc: BaseException) -> None:
    """An error nobody anticipated: still exit 2 (error), never 1 (a CI gate would read "backdoor")."""
    if os.environ.get("BDGUARD_DEBUG"):
        traceback.print_exception(exc)
    typer.echo(f"internal error: {type(exc).__name__}: {exc} (set BDGUARD_DEBUG=1 for the traceback)", err=True)
    raise typer.Exit(EXIT_ERROR)


def _fail(exc: BaseException | str) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(EXIT_ERROR)


def _check_outputs(**outputs: Path | None) -> None:
    """Refuse an output that cannot be written before the scan runs (its result would be lost after)."""
    for option, path in outputs.items():
        problem = output_problem(path) if path is not None else None
        if problem:
            raise ValueError(f"--{option.replace('_', '-')} {printable(path or '')}: {problem}")


def _emit(verdict: Verdict, meta: dict[str, Any], report: Path | None, html_out: Path | None,
          sarif: Path | None, artifact: str) -> dict[str, Any]:
    data = report_dict(verdict, meta)
    if report:
        write_json(data, report)
    if html_out:
        write_html(data, html_out)
    if sarif:
        write_sarif(data, sarif, artifact)
    return data


def scan(
    model: Annotated[Path, typer.Argument(help="ONNX classifier to scan")],
    clean_data: Annotated[Path, typer.Option("--clean-data", help=".npz with clean x and y")],
    report: Annotated[Path | None, typer.Option("--report", help="write the JSON report here")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
    sarif: Annotated[Path | None, typer.Option("--sarif", help="write SARIF 2.1.0 findings")] = None,
    output: Annotated[str | None, typer.Option("--output", help="model output to use")] = None,
    detectors: Annotated[str | None, typer.Option("--detectors", help="comma-separated detector keys")] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="JSON report of an earlier clean version: how this model's per-class trigger "
                           "sizes shrank against it joins the per-class agreement")] = None,
    triggers: Annotated[Path | None, typer.Option(
        "--triggers", help="write the target classes' reversed triggers (.npz, mask_<c>/pattern_<c> in the "
                           "model's input layout) for the telemetry client's trigger library")] = None,
    layout: Annotated[str, typer.Option("--layout", help=_LAYOUT_HELP)] = "auto",
    budget: Annotated[float, typer.Option(
        "--budget", help="times the trigger searches' default work budget: a large model whose search the "
                         "budget cuts short (the report says so) is searched better, and longer, with 2-4")] = 1.0,
) -> None:
    """Scan a model for backdoors. Exit 0 clean, 1 backdoor detected, 2 error."""
    start = time.perf_counter()
    try:
        _check_outputs(report=report, html=html_out, sarif=sarif, triggers=triggers)
        config = _config(detectors, seed, baseline, layout, budget)
        with _progress("scan") as progress:
            verdict = scan_model_file(model, clean_data, config, output, progress)
        data = _emit(verdict, {"model": printable(model), "seconds": round(time.perf_counter() - start, 3)},
                     report, html_out, sarif, printable(model))
        if triggers is not None:
            write_triggers(verdict, triggers)
    except BaselineMismatch as exc:
        _fail(f"--baseline {printable(baseline or '')}: the report has {exc.baseline_classes} classes, "
              f"{printable(model)} has {exc.model_classes}; give a report of an earlier version of this model")
    except _ERRORS as exc:
        _fail(exc)
    except Exception as exc:
        _internal(exc)
    status = "BACKDOOR DETECTED" if verdict.backdoor_detected else "clean"
    typer.echo(f"{status}: confidence={data['confidence']:.3f} target_classes={data['target_classes']}")
    for line in _per_detector(data):
        typer.echo(line)
    detector_notes = sorted({d["evidence"]["note"] for d in data["detectors"] if d["evidence"].get("note")})
    for note in [*data["notes"], *detector_notes]:
        typer.echo(f"  note: {note}")
    raise typer.Exit(EXIT_FOUND if verdict.backdoor_detected else EXIT_CLEAN)


def _per_detector(data: dict[str, Any]) -> list[str]:
    """One line per detector: score against its threshold, verdict, most suspicious classes, time."""
    width = max((len(d["key"]) for d in data["detectors"]), default=0)
    def classes(d: dict[str, Any]) -> str:
        if d["target_classes"]:
            return f"target classes {d['target_classes']}"
        top = (d["evidence"].get("ranking") or [])[:1]
        return f"closest class {top[0]}" if top else ""

    return [f"  {d['key']:<{width}}  score {d['score']:6.2f} / {d['threshold']:.2f}  {d['verdict']:<10}  "
            f"{classes(d):<22}  {d['seconds']:.1f}s" for d in data["detectors"]]


def scan_data(
    model: Annotated[Path, typer.Argument(help="ONNX classifier trained on the data")],
    data: Annotated[Path, typer.Option("--data", help=".npz training data with x and y")],
    report: Annotated[Path | None, typer.Option("--report", help="write the JSON report here")] = None,
    output: Annotated[str | None, typer.Option("--output", help="model output to use")] = None,
    detectors: Annotated[str | None, typer.Option("--detectors", help="comma-separated detector keys")] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    layout: Annotated[str, typer.Option("--layout", help=_LAYOUT_HELP)] = "auto",
) -> None:
    """Find poisoned training samples. Exit 0 none suspicious, 1 suspicious found, 2 error."""
    start = time.perf_counter()
    try:
        _check_outputs(report=report)
        config = _config(detectors, seed, layout=layout, level="data")
        with _progress("scan-data") as progress:
            verdict = scan_data_file(model, data, config, output, progress)
        out = _emit(verdict, {"model": printable(model), "data": printable(data),
                              "seconds": round(time.perf_counter() - start, 3)}, report, None, None, printable(data))
    except _ERRORS as exc:
        _fail(exc)
    except Exception as exc:
        _internal(exc)
    n = len(out["suspicious_indices"])
    typer.echo(f"{n} suspicious sample(s); target_classes={out['target_classes']}")
    flagging = [d for d in out["detectors"] if d["verdict"] == "suspicious"]
    for d in flagging:
        typer.echo(f"  {d['key']}: {len(d['suspicious_indices'])} sample(s)"
                   + (f", class(es) {d['target_classes'][:3]}" if d["target_classes"] else ", every class"))
    for note in [*out["notes"], *sorted({d["evidence"]["note"] for d in flagging if d["evidence"].get("note")})]:
        typer.echo(f"  note: {note}")
    raise typer.Exit(EXIT_FOUND if n else EXIT_CLEAN)


def register(app: typer.Typer) -> None:
    """Add ``scan`` and ``scan-data`` to the root ``bdguard`` app."""
    app.command("scan")(scan)
    app.command("scan-data")(scan_data)


def main() -> None:  # pragma: no cover - convenience for ``python -m``
    app = typer.Typer(add_completion=False)
    register(app)
    app(sys.argv[1:])
