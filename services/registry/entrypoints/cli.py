"""`bdguard registry publish|promote|remediate|request-remediation`: what a registry and a release manager do."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.registry.service_layer.promote import UnderOpenIncident, promote
from services.registry.service_layer.views import registry_view
from shared.contracts.records import ModelVersionPublished, RemediationRequested, WireRecord
from shared.db.unit_of_work import SqlUnitOfWork, uow_factory_for
from shared.files import sha256_file
from shared.ledger.model import InvalidTransition
from shared.messaging.envelope import build_message
from shared.messaging.outbox import flush_once
from shared.messaging.publisher import KafkaPublisher
from shared.settings import ServiceSettings

registry_app = typer.Typer(help="Publish model versions and move the production alias.")
console = Console(stderr=True)


async def _send(event: WireRecord, correlation_id: str | None = None) -> str:
    message = build_message(event, source="urn:bdguard:registry-cli", correlation_id=correlation_id)
    publisher = KafkaPublisher(ServiceSettings().kafka_bootstrap_servers)
    await publisher.start()
    try:
        await publisher.publish(message)
    finally:
        await publisher.stop()
    return dict(message.headers)["ce_id"].decode()


def _provenance(path: Path) -> dict[str, object]:
    """The provenance JSON object at ``path``; a clear error and exit 2 before anything is sent otherwise."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        console.print(f"[red]error:[/red] cannot read provenance {path}: {exc}")
        raise typer.Exit(2) from exc
    if not isinstance(loaded, dict):
        console.print(f"[red]error:[/red] provenance {path} is not a JSON object")
        raise typer.Exit(2)
    return loaded


@registry_app.command("publish")
def publish(artifact: Path, model: str = typer.Option(...), version: str = typer.Option(...),
            source_url: str = typer.Option(...), submitter: str = "cli",
            signature: Path | None = typer.Option(None, exists=True, dir_okay=False),
            provenance: Path | None = None,
            clean_data: Path | None = typer.Option(None, exists=True, dir_okay=False),
            digest: str | None = typer.Option(None, help="declared digest (default: computed here)")) -> None:
    """Publish a model-version-published event, as a registry webhook would."""
    if not artifact.exists():
        console.print(f"[red]no such artifact:[/red] {artifact}")
        raise typer.Exit(2)
    if artifact.is_dir() and digest is None:
        console.print(f"[red]error:[/red] artifact {artifact} is a directory: give its --digest")
        raise typer.Exit(2)
    event = ModelVersionPublished(
        model=model, version=version, artifact_uri=artifact.resolve().as_uri(),
        artifact_digest=digest or sha256_file(artifact), source_url=source_url, submitter=submitter,
        signature_uri=signature.resolve().as_uri() if signature else None,
        provenance=_provenance(provenance) if provenance else None,
        clean_data_uri=clean_data.resolve().as_uri() if clean_data else None)
    typer.echo(asyncio.run(_send(event)))


def _refuse(message: str) -> typer.Exit:
    """One line on stderr (never wrapped: scripts read it), and the registry's refusal exit code."""
    console.print(f"[red]refused:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


@registry_app.command("promote")
def promote_cmd(model: str, version: str, who: str = "cli",
                force: bool = typer.Option(False, "--force", help="promote even under an open backdoor incident"),
                reason: str = typer.Option("", help="why a --force promotion is safe (on the audit trail)")) -> None:
    """Move the production alias to a scanned-clean version (refused under an open backdoor incident)."""
    if force and not reason.strip():
        console.print("[red]error:[/red] --force needs --reason TEXT (it goes on the audit trail)", soft_wrap=True)
        raise typer.Exit(2)
    settings = ServiceSettings()
    factory = uow_factory_for(settings.database_url, "registry-cli", SqlUnitOfWork)
    try:
        done = promote(model, version, who, factory(), force=force, reason=reason)
    except UnderOpenIncident as exc:
        refusal = _refuse(f"{exc.key} is under open backdoor incident {exc.incident_id}: close it (`bdguard "
                          f"incident resolve|false-positive {exc.incident_id}`) or pass --force --reason TEXT")
        _flush_quietly(factory, settings)  # the refusal is audited: its mirror too, if the bus answers
        raise refusal from exc
    except (LookupError, InvalidTransition) as exc:
        raise _refuse(str(exc)) from exc
    try:
        asyncio.run(flush_once(factory, settings.kafka_bootstrap_servers))
    except Exception as exc:  # committed; the audit mirror waits in the outbox for the next flush
        console.print(f"[yellow]audit mirror not yet published ({type(exc).__name__})[/yellow]")
    forced = f" (forced over open incident {done.forced_over_incident})" if done.forced_over_incident else ""
    console.print(f"{model}: production {done.replaced or '(none)'} → {version}{forced}")


def _flush_quietly(factory: Callable[[], SqlUnitOfWork], settings: ServiceSettings) -> None:
    """Publish the outbox (the audit mirror) if the bus answers; it keeps the rows for the next flush if not."""
    with contextlib.suppress(Exception):
        asyncio.run(flush_once(factory, settings.kafka_bootstrap_servers))


@registry_app.command("view")
def view(model: str | None = None, as_json: bool = typer.Option(False, "--json")) -> None:
    """Approved and rejected versions: status, failed checks, scan verdict, and every decision with its reason."""
    rows = registry_view(uow_factory_for(ServiceSettings().database_url, "registry-cli", SqlUnitOfWork)(), model)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("model/version", "status", "prod", "failed checks", "scan", "last decision")
    for r in rows:
        last = r["decisions"][-1] if r["decisions"] else {}
        reason = last.get("rationale") or last.get("reason") or last.get("warning") or ""
        scan = "" if r["scan_confidence"] is None else f"{r['scan_confidence']:.2f} → {r['scan_targets']}"
        table.add_row(f"{r['model']}/{r['version']}", r["status"], "★" if r["production"] else "",
                      ", ".join(r["supply_chain_failed"]), scan, f"{last.get('decision', '')} {reason}"[:70])
    Console().print(table)


@registry_app.command("remediate")
def remediate_cmd(model: str, version: str, clean_data: Path = typer.Option(..., exists=True),
                  source_url: str = typer.Option(..., help="where the candidate is published (internal registry)"),
                  signing_key: Path | None = typer.Option(None, exists=True), rounds: int = 2, who: str = "cli",
                  out_dir: Path = Path(".bdguard/remediated")) -> None:
    """Remediate a quarantined version and publish the candidate, which must pass supply chain and scanning."""
    from services.registry.service_layer.remediation import propose_remediated_version

    settings = ServiceSettings()
    factory = uow_factory_for(settings.database_url, "registry-cli", SqlUnitOfWork)
    try:
        event = propose_remediated_version(model, version, clean_data, factory(), out_dir=out_dir, who=who,
                                           source_url=source_url, signing_key=signing_key, rounds=rounds)
    except (LookupError, InvalidTransition, ValueError) as exc:
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from exc
    remediation = (event.provenance or {}).get("remediation", {})
    console.print(f"candidate {model}/{event.version}: accuracy drop {remediation.get('accuracy_drop_total')}, "
                  f"last round {remediation.get('rounds', [{}])[-1].get('asr_after')} ASR on the reversed trigger")
    typer.echo(asyncio.run(_send(event)))
    asyncio.run(flush_once(factory, settings.kafka_bootstrap_servers))


@registry_app.command("request-remediation")
def request_remediation(model: str, version: str, who: str = "cli", incident: str | None = None,
                        clean_data: Path | None = typer.Option(None, exists=True,
                                                               help="default: the service's clean data")) -> None:
    """Ask the remediation service (over Kafka) to remediate a quarantined or rolled-back version."""
    event = RemediationRequested(model=model, version=version, requested_by=who, incident_id=incident,
                                 clean_data_uri=clean_data.resolve().as_uri() if clean_data else None)
    typer.echo(asyncio.run(_send(event, correlation_id=incident)))


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
