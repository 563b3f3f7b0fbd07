"""``bdguard remediate``: exit 0 when the remediated model meets the bar, 1 when not (file written), 2 on errors.

The bar needs a measured ASR, so a blind run (neither ``--trigger`` nor ``--reverse``) exits 1 even when
accuracy holds. ``--reverse`` is what the remediation service does: the scanner's Neural Cleanse reverses
the trigger (a target class's, or an all-to-all backdoor's universal one), the model is remediated, and
the result is scanned and remediated again (``--rounds``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.remediation.adapters.triggers import load_trigger
from services.remediation.domain.fine_pruning import RemediationConfig
from services.remediation.domain.report import RemediationReport
from services.remediation.service_layer.remediate import remediate_model
from services.remediation.service_layer.rounds import overall_report, remediate_in_rounds
from services.scanner.adapters.onnx_model import open_model
from shared.files import output_problem, printable

EXIT_OK, EXIT_BELOW_BAR, EXIT_ERROR = 0, 1, 2


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """Rich bars on a TTY; one plain line per stage change otherwise (pipes, CI)."""
    console = Console(stderr=True)
    if not console.is_terminal or os.environ.get("CI"):
        seen: set[str] = set()

        def plain(stage: str, done: int, total: int) -> None:
            if stage not in seen:
                seen.add(stage)
                console.print(f"{stage} ...", highlight=False)

        yield plain
        return
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _summary(r: RemediationReport) -> str:
    asr = (f"{r.asr_before:.3f} -> {r.asr_after:.3f}{' (all-to-all: moved off their class)' if r.all_to_all else ''}"
           if r.asr_after is not None
           else "not measured (no --trigger: the bar cannot be confirmed)")
    verdict = "meets the bar" if r.meets_bar else "does NOT meet the bar"
    return (f"pruned {len(r.pruned.indices)}/{r.pruned.units} units of {r.pruned.tensor}; clean accuracy "
            f"{r.clean_accuracy_before:.3f} -> {r.clean_accuracy_after:.3f} (held-out n={r.n_holdout}); "
            f"ASR {asr}; {verdict}; wrote {r.output}")


def remediate(
    model: Annotated[Path, typer.Argument(help="backdoored ONNX classifier")],
    clean_data: Annotated[Path, typer.Option("--clean-data", help=".npz with clean x and y")],
    out: Annotated[Path, typer.Option("--out", help="where to write the remediated ONNX model")],
    report: Annotated[Path | None, typer.Option("--report", help="write the JSON report here")] = None,
    trigger: Annotated[Path | None, typer.Option(
        "--trigger", help=".npz with mask, pattern (and optional target, or all_to_all=True): guides pruning, "
                     "unlearns, measures ASR"
    )] = None,
    reverse: Annotated[bool, typer.Option(
        "--reverse", help="no trigger at hand: reverse it with the scanner's Neural Cleanse, remediate, and repeat "
                          "on the result (--rounds); the ASR is measured against the reversed trigger")] = False,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="with --reverse: scan and remediate this often")] = 2,
    max_accuracy_drop: Annotated[float, typer.Option("--max-accuracy-drop", help="clean accuracy budget")] = 0.02,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
) -> None:
    """Remove a backdoor by Fine-Pruning (+ unlearning when a trigger is given or reversed)."""
    try:
        if reverse and trigger is not None:
            raise ValueError("give --trigger or --reverse, not both")
        _check_outputs(out=out, report=report)
        config = RemediationConfig(max_accuracy_drop=max_accuracy_drop, seed=seed)
        if trigger is not None:
            parent = open_model(model)
            trig = load_trigger(trigger, parent.input_shape, parent.num_classes)
        else:
            trig = None
        with _progress() as progress:
            result = (_reversed(model, clean_data, out, config, rounds, progress) if reverse else
                      remediate_model(model, clean_data, out, config, trigger=trig, progress=progress))
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result.to_dict(), indent=2))
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from exc
    except Exception as exc:  # unanticipated: still exit 2 (error), never 1 ("below the bar")
        if os.environ.get("BDGUARD_DEBUG"):
            traceback.print_exception(exc)
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (set BDGUARD_DEBUG=1 for the traceback)", err=True)
        raise typer.Exit(EXIT_ERROR) from exc
    typer.echo(_summary(result))
    raise typer.Exit(EXIT_OK if result.meets_bar else EXIT_BELOW_BAR)


def _check_outputs(**outputs: Path | None) -> None:
    """Refuse an output that cannot be written before the work starts (missing folders are created)."""
    for option, path in outputs.items():
        problem = output_problem(path, create_parents=True) if path is not None else None
        if problem:
            raise ValueError(f"--{option} {printable(path or '')}: {problem}")


def _reversed(model: Path, clean: Path, out: Path, config: RemediationConfig, rounds: int,
              progress: Callable[[str, int, int], None]) -> RemediationReport:
    """Scan → remediate ``rounds`` times in a scratch folder; the last model goes to ``out``."""
    if out.resolve() == model.resolve():
        raise ValueError(f"refusing to overwrite the parent model {model}; choose another --out")
    with tempfile.TemporaryDirectory(prefix="bdguard-remediate-") as work:
        final, reports = remediate_in_rounds(model, clean, Path(work), config, rounds=rounds, progress=progress)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, out)
    return overall_report(model, out, reports)


def register(app: typer.Typer) -> None:
    """Add the top-level ``remediate`` command to ``app``."""
    app.command("remediate")(remediate)
