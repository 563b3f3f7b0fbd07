"""``bdguard verify``: run the supply-chain checks on a local artifact, print a table, write a report.

Exit codes: 0 approved, 1 rejected, 2 usage or I/O error. Works without a TTY (CI pipelines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.files import output_problem, printable

from ..adapters.signatures import public_key_problem
from ..config import SupplyChainSettings
from ..domain.model import ModelVersionPublished, SupplyChainVerdict
from ..service_layer.validate import validate_model_version

EXIT_APPROVED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def register(app: typer.Typer) -> None:
    """Add the top-level ``verify`` command to the root Typer app."""
    app.command("verify", help="Validate a model artifact's supply chain (source, digest, signature, ...).")(verify)


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(printable(message))}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _read_provenance(path: Path | None, console: Console) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(console, f"cannot read provenance {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise _fail(console, f"provenance {path} is not a JSON object")
    return loaded


def _printable(value: Any) -> Any:
    """``value`` with every string JSON can hold: a path that is not UTF-8 with ``\\xNN`` escapes."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def _table(verdict: SupplyChainVerdict) -> Table:
    table = Table(title=printable(f"{verdict.model} {verdict.version}"), show_lines=False)
    for column in ("check", "result", "severity", "details"):
        table.add_column(column, overflow="fold")
    for check in verdict.checks:
        skipped = bool(check.evidence.get("skipped"))
        result = "[green]pass[/]" if check.passed else "[dim]skip[/]" if skipped else "[red]FAIL[/]"
        severity = f"[{_STYLE[check.severity]}]{check.severity}[/]"
        table.add_row(check.name, result, severity, printable(check.details))
    return table


def verify(
    artifact: Annotated[Path, typer.Argument(help="Model file or directory.")],
    source_url: Annotated[str, typer.Option("--source-url", help="Where the model came from.")],
    provenance: Annotated[Path | None, typer.Option("--provenance", help="Provenance JSON.")] = None,
    digest: Annotated[str | None, typer.Option("--digest", help="Declared sha256:<hex>.")] = None,
    signature: Annotated[Path | None, typer.Option("--signature", help="model-signing bundle.")] = None,
    public_key: Annotated[list[Path] | None, typer.Option("--public-key", help="EC public key PEM.")] = None,
    certificate: Annotated[list[Path] | None, typer.Option("--certificate", help="Chain PEM(s).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name.")] = None,
    version: Annotated[str, typer.Option("--version", help="Model version.")] = "0",
    report: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow allowlisted pickles.")] = False,
) -> None:
    """Validate ARTIFACT; exit 0 approved, 1 rejected, 2 usage or I/O error."""
    console = Console(width=None if os.isatty(1) else 160, highlight=False)
    if not os.path.lexists(artifact):
        raise _fail(console, f"artifact {artifact} does not exist")
    problem = output_problem(report) if report is not None else None
    if problem:
        raise _fail(console, f"--report {report}: {problem}")
    for extra in [signature, *(public_key or []), *(certificate or [])]:
        if extra is not None and not extra.is_file():
            raise _fail(console, f"{extra} is not a readable file")
    for key in public_key or []:
        if problem := public_key_problem(key):
            raise _fail(console, f"--public-key {key} {problem}")
    settings = SupplyChainSettings()
    updates: dict[str, Any] = {"allow_pickle": allow_pickle or settings.allow_pickle}
    if public_key:
        updates["public_keys"] = list(public_key)
    if certificate:
        updates["certificate_chain"] = list(certificate)
    event = ModelVersionPublished(
        model=model or artifact.name,
        version=version,
        artifact_uri=str(artifact),
        artifact_digest=digest or "",
        source_url=source_url,
        signature_uri=str(signature) if signature else None,
        provenance=_read_provenance(provenance, console),
        submitter=os.environ.get("USER", "cli"),
    )
    with console.status("validating...", spinner="dots") as status:
        verdict = validate_model_version(
            event, settings.model_copy(update=updates), progress=lambda name: status.update(f"check: {name}")
        )
    console.print(_table(verdict))
    colour = "green" if verdict.approved else "red"
    outcome = "APPROVED" if verdict.approved else "REJECTED"
    console.print(f"[bold {colour}]{outcome}[/] - {printable(verdict.rationale.partition(': ')[2])}")
    if report is not None:
        try:
            report.write_bytes(orjson.dumps(_printable(verdict.to_dict()), option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise _fail(console, f"cannot write report {report}: {exc}") from exc
    raise typer.Exit(EXIT_APPROVED if verdict.approved else EXIT_REJECTED)
