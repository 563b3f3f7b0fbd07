"""`bdguard incident list|show|ack|confirm|false-positive|resolve` for responders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from services.incident.adapters.repository import IncidentUnitOfWork
from services.incident.domain.incident import IncidentError
from services.incident.service_layer.handlers import respond
from shared.db.unit_of_work import uow_factory_for
from shared.messaging.outbox import flush_once
from shared.settings import ServiceSettings

incident_app = typer.Typer(help="Incidents: list, inspect and act on them (every action is audited).")
out = Console()
err = Console(stderr=True)


def _uow_factory() -> Callable[[], IncidentUnitOfWork]:
    return uow_factory_for(ServiceSettings().database_url, "incident-cli", IncidentUnitOfWork)


@incident_app.command("list")
def list_incidents(open_only: bool = typer.Option(False, "--open"), as_json: bool = typer.Option(False, "--json")
                   ) -> None:
    with _uow_factory()() as uow:
        incidents = uow.incidents.list_incidents(open_only=open_only)
    if as_json:
        typer.echo(json.dumps([{"incident_id": i.incident_id, "model": i.model, "version": i.version,
                                "severity": i.severity.label, "status": i.status.value, "action": i.action,
                                "confidence": i.confidence} for i in incidents]))
        return
    table = Table("incident", "model/version", "severity", "status", "action", "confidence", "opened")
    for i in incidents:
        table.add_row(i.incident_id, f"{i.model}/{i.version}", i.severity.label, i.status.value, i.action,
                      f"{i.confidence:.2f}", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.opened_at)))
    out.print(table)


@incident_app.command("show")
def show(incident_id: str) -> None:
    with _uow_factory()() as uow:
        incident = uow.incidents.get(incident_id)
    if incident is None:
        err.print(f"[red]no incident {incident_id}[/red]")
        raise typer.Exit(1)
    typer.echo(json.dumps({"incident_id": incident.incident_id, "model": incident.model,
                           "version": incident.version, "severity": incident.severity.label,
                           "status": incident.status.value, "action": incident.action,
                           "confidence": incident.confidence, "timeline": incident.timeline,
                           "evidence": incident.evidence, "affected": incident.affected}, indent=2, default=str))


def _act(incident_id: str, action: str, who: str, note: str) -> None:
    factory = _uow_factory()
    try:
        incident = respond(incident_id, action, who, factory(), note)
    except (LookupError, IncidentError, ValueError) as exc:
        err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from exc

    try:
        asyncio.run(flush_once(factory, ServiceSettings().kafka_bootstrap_servers))
    except Exception as exc:  # the action is committed; the outbox publishes it when the bus is back
        err.print(f"[yellow]recorded, not yet published ({type(exc).__name__}); it stays in the outbox[/yellow]")
    err.print(f"{incident.incident_id}: {incident.status.value} (severity {incident.severity.label}, "
              f"action {incident.action})")


@incident_app.command("ack")
def ack(incident_id: str, who: str = typer.Option(..., "--by")) -> None:
    _act(incident_id, "acknowledge", who, "")


@incident_app.command("confirm")
def confirm(incident_id: str, who: str = typer.Option(..., "--by")) -> None:
    """Confirm the backdoor; a production version is then rolled back."""
    _act(incident_id, "confirm", who, "")


@incident_app.command("false-positive")
def false_positive(incident_id: str, who: str = typer.Option(..., "--by"), reason: str = typer.Option(...)) -> None:
    """Close as a false positive; the evidence becomes detector calibration feedback."""
    _act(incident_id, "false-positive", who, reason)


@incident_app.command("resolve")
def resolve(incident_id: str, who: str = typer.Option(..., "--by"), note: str = "") -> None:
    _act(incident_id, "resolve", who, note)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
