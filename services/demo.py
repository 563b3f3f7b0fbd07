"""The main job: the end-to-end story on embedded defaults (local real broker, SQLite file).

Today's slice: starts the real broker, migrates the store, creates the catalogued topics, publishes a
model registry event and follows it across the bus, the ledger and the audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path

from rich.console import Console

from shared.audit.chain import verify_chain
from shared.broker.local import LocalBroker, free_port, port_open
from shared.contracts.records import ModelVersionPublished
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.db.unit_of_work import SqlUnitOfWork
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.messaging.envelope import build_message
from shared.messaging.outbox import audit
from shared.testing.kafka import collect, produce
from shared.topics import MODEL_VERSION_PUBLISHED

console = Console()


def start_broker(home: Path) -> tuple[str, LocalBroker | None]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
    port = 9092 if not port_open("127.0.0.1", 9092) else free_port()
    broker = LocalBroker(home / "kafka", port=port, controller_port=free_port())
    began = time.monotonic()
    bootstrap = broker.start()
    console.print(f"[green]✓[/green] real Kafka broker at {bootstrap} in {time.monotonic() - began:.1f}s")
    return bootstrap, broker


async def story(bootstrap: str, db_url: str, artifacts: Path) -> None:
    created = await ensure_topics(bootstrap, catalogue_partitions())
    console.print(f"[green]✓[/green] topics ready ({len(created)} created)")
    model = f"digits-{uuid.uuid4().hex[:6]}"
    artifact = artifacts / f"{model}.onnx"
    artifact.write_bytes(b"placeholder artifact for the bus walk-through")
    event = ModelVersionPublished(
        model=model, version="1", artifact_uri=artifact.as_uri(),
        artifact_digest="sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest(),
        source_url="https://huggingface.co/models/acme/digits", submitter="demo@bdguard")
    message = build_message(event, source="urn:bdguard:demo-registry")
    await produce(bootstrap, [message])
    got = await collect(bootstrap, [MODEL_VERSION_PUBLISHED], keep=lambda r: r.key == model.encode(),
                        until=lambda rs: len(rs) >= 1)
    console.print(f"[green]✓[/green] registry event for {model}/1 on {MODEL_VERSION_PUBLISHED}, "
                  f"read back by a plain consumer: {len(got[0].value)} bytes, headers "
                  f"{sorted(k for k, _ in got[0].headers)}")
    uow = SqlUnitOfWork(make_session_factory(make_engine(db_url)))
    with uow:
        audit(uow, actor="demo", action="model-version.published", subject=f"{model}/1",
              details={"source_url": event.source_url})
        uow.commit()
    with uow:
        report = verify_chain(uow.audit.iterate())
    console.print(f"[green]✓[/green] audit trail: {report.records} record(s), chain verifies: {report.ok}")


def main() -> None:
    home = Path(os.environ.get("BDGUARD_HOME", ".bdguard"))
    db_url = os.environ.get("BDGUARD_DATABASE_URL", f"sqlite:///{home / 'bdguard.db'}")
    upgrade(db_url)
    console.print(f"[green]✓[/green] store migrated: {db_url}")
    bootstrap, broker = start_broker(home)
    artifacts = (home / "artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(story(bootstrap, db_url, artifacts))
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
