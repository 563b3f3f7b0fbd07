"""``python -m services.demo`` (``make demo``): the whole story on embedded defaults.

A fresh real Kafka broker (from the Maven Central jars), a SQLite store, and every service as its own
process: supply chain, scanner, incident response, rollback, telemetry, remediation and the reference
inference server. Five acts: a clean model reaches production; a lookalike source is rejected; a
backdoored model is caught by the scanner; a backdoored model that slipped through is caught in
production by telemetry and rolled back automatically; the responder asks for a repaired version,
which goes through supply chain and scanning again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.demo.models import train_models
from services.demo.stack import Stack
from services.demo.story import (
    Demo,
    act_clean_model,
    act_lookalike,
    act_remediation,
    act_scanner_catches,
    act_slipped,
)
from shared.audit.chain import verify_chain
from shared.messaging.outbox import flush_once
from shared.testing.artifacts import write_keypair

console = Console()


async def run(demo: Demo) -> None:
    for act in (act_clean_model, act_lookalike, act_scanner_catches, act_slipped, act_remediation):
        await act(demo)
    await flush_once(demo.uow, demo.stack.bootstrap)


def summary(demo: Demo) -> None:
    console.rule("[bold]ledger and audit trail")
    table = Table("version", "status", "production")
    with demo.uow() as uow:
        prod = uow.ledger.production_version(demo.model)
        for mv in uow.ledger.list(demo.model):
            table.add_row(mv.version, mv.status.value, "★" if mv.version == prod else "")
        report = verify_chain(uow.audit.iterate())
    console.print(table)
    console.print(f"audit trail: {report.records} hash-chained records, verifies: {report.ok}")
    console.print(f"everything is kept in {demo.stack.home} (store, reports, service logs)")


def main() -> None:
    # the story is the output; transient client chatter (a coordinator not elected yet) is not
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    began = time.monotonic()
    home = Path(os.environ.get("BDGUARD_DEMO_HOME", ".bdguard/demo")).resolve()
    stack = Stack(home)
    console.rule("[bold]Backdoor Guard — EN 18031 6.3.8 end to end")
    infra_s = stack.start_infrastructure()
    console.print(f"real Kafka broker at {stack.bootstrap}, store {stack.db_url} ready in {infra_s:.1f}s")
    models = train_models(home / "models")
    console.print(f"trained 3 digit classifiers: clean accuracy {models.accuracy}, "
                  f"attack success with the trigger {models.attack_success}")
    private_key, public_key = write_keypair(home, "registry")
    try:
        stack.start_services(stack.env(public_key, models.clean_data, private_key), "digits", models.clean, "1")
        console.print(f"services running as processes: {', '.join(p.name for p in stack.processes)}")
        demo = Demo(stack, models, private_key)
        asyncio.run(run(demo))
        summary(demo)
    finally:
        stack.stop()
    console.print(f"demo finished in {time.monotonic() - began:.0f}s")


if __name__ == "__main__":
    main()
