"""Operator commands: the local broker, the store, topics and the audit trail."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.audit.chain import verify_chain
from shared.broker.jars import BrokerSetupError
from shared.broker.local import LocalBroker
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.db.unit_of_work import SqlUnitOfWork
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.settings import ServiceSettings

console = Console(stderr=True)
broker_app = typer.Typer(help="Run a real single-node Apache Kafka broker from its Maven Central jars.")
db_app = typer.Typer(help="The shared store (model version ledger, audit trail).")
audit_app = typer.Typer(help="The hash-chained audit trail.")
ledger_app = typer.Typer(help="The model version ledger.")
topics_app = typer.Typer(help="Kafka topics from schemas/topics.json.")


def _broker(data_dir: Path | None, port: int, controller_port: int) -> LocalBroker:
    home = ServiceSettings().home
    return LocalBroker(data_dir or home / "kafka", port=port, controller_port=controller_port)


@broker_app.command("start")
def broker_start(port: int = 9092, controller_port: int = 9093, data_dir: Path | None = None) -> None:
    """Start the broker (fetching jars once) and wait until it serves."""
    broker = _broker(data_dir, port, controller_port)
    began = time.monotonic()
    try:
        bootstrap = broker.start()
    except BrokerSetupError as exc:
        console.print(f"[red]broker failed:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"broker ready at {bootstrap} in {time.monotonic() - began:.1f}s (log: {broker.log_file})")
    typer.echo(bootstrap)


@broker_app.command("stop")
def broker_stop(port: int = 9092, controller_port: int = 9093, data_dir: Path | None = None) -> None:
    stopped = _broker(data_dir, port, controller_port).stop()
    console.print("broker stopped" if stopped else "no broker was running")


@broker_app.command("status")
def broker_status(port: int = 9092, controller_port: int = 9093, data_dir: Path | None = None) -> None:
    broker = _broker(data_dir, port, controller_port)
    running = broker.is_running()
    typer.echo(json.dumps({"running": running, "bootstrap": broker.bootstrap, "pid": broker.pid(),
                           "data_dir": str(broker.data_dir)}))
    raise typer.Exit(0 if running else 1)


@db_app.command("upgrade")
def db_upgrade(url: str | None = typer.Option(None, help="SQLAlchemy URL (default: settings)")) -> None:
    """Apply the Alembic migrations."""
    target = url or ServiceSettings().database_url
    upgrade(target)
    console.print(f"store at head: {target.split('@')[-1]}")


def _uow() -> SqlUnitOfWork:
    return SqlUnitOfWork(make_session_factory(make_engine(ServiceSettings().database_url)))


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the chain; exit 1 and name the first tampered record when it does not verify."""
    with _uow() as uow:
        report = verify_chain(uow.audit.iterate())
    typer.echo(json.dumps(report.__dict__))
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("show")
def audit_show(subject: str | None = None, limit: int = 50) -> None:
    table = Table("seq", "time", "actor", "action", "subject", "details")
    with _uow() as uow:
        entries = list(uow.audit.iterate(subject))[-limit:]
    for e in entries:
        table.add_row(str(e.seq), time.strftime("%H:%M:%S", time.localtime(e.recorded_at)), e.actor, e.action,
                      e.subject, json.dumps(e.details)[:80])
    Console().print(table)


@ledger_app.command("list")
def ledger_list(model: str | None = None, as_json: bool = typer.Option(False, "--json")) -> None:
    with _uow() as uow:
        versions = uow.ledger.list(model)
        prod = {mv.model: uow.ledger.production_version(mv.model) for mv in versions}
    if as_json:
        typer.echo(json.dumps([{"model": v.model, "version": v.version, "status": v.status.value,
                                "production": prod[v.model] == v.version} for v in versions]))
        return
    table = Table("model", "version", "status", "production", "digest")
    for v in versions:
        table.add_row(v.model, v.version, v.status.value, "★" if prod[v.model] == v.version else "",
                      v.artifact_digest[:19])
    Console().print(table)


@topics_app.command("create")
def topics_create() -> None:
    """Create every catalogued topic and its dead-letter topic (idempotent)."""
    created = asyncio.run(ensure_topics(ServiceSettings().kafka_bootstrap_servers, catalogue_partitions()))
    console.print(f"created {len(created)} topic(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
    app.add_typer(db_app, name="db")
    app.add_typer(audit_app, name="audit")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(topics_app, name="topics")
