"""Escalation → rollback-completed latency, and alert → rollback end to end, on a real broker.

Runs the incident and rollback services as separate processes against a fresh SQLite store, seeds
N models (a clean version and a production version each), sends one critical telemetry alert per
model, and reads rollback.completed with a plain consumer. Prints p50/p95/max of:
  * alert produced → rollback.completed consumed (what a responder would experience), and
  * rollback service: escalation received → alias moved and committed (``duration_ms``).

    python -m benchmarks.rollback_latency [--models 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from shared import topics
from shared.broker.resolve import resolve_broker, stop_owner
from shared.contracts.records import Alert
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import ModelVersion, Status
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.messaging.envelope import build_message
from shared.testing.kafka import collect, produce
from shared.testing.processes import ServiceProcess


def seed(db_url: str, models: list[str]) -> None:
    uow = SqlUnitOfWork(make_session_factory(make_engine(db_url)))
    with uow:
        for m in models:
            for i, status in enumerate((Status.SCANNED_CLEAN, Status.PRODUCTION)):
                uow.ledger.add(ModelVersion(m, str(i + 1), f"file:///{m}/{i}.onnx", "sha256:" + "0" * 64,
                                            status=status, created_at=float(i), updated_at=float(i)))
            uow.ledger.set_production(m, "2", time.time())
        uow.commit()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(bootstrap: str, models: list[str]) -> tuple[list[float], list[float]]:
    sent: dict[str, float] = {}
    for m in models:  # one at a time, so each latency is not queueing behind the others
        alert = Alert(alert_id=f"a-{uuid.uuid4().hex[:8]}", model=m, version="2", kind="targeted_misclassification",
                      severity_hint="critical", source="telemetry", detected_at=time.time(), evidence={})
        sent[m] = time.time()
        await produce(bootstrap, [build_message(alert, source="urn:bench")])
        await collect(bootstrap, [topics.ROLLBACK_COMPLETED], keep=lambda r, m=m: r.key == m.encode(),
                      until=lambda got: len(got) >= 1, wait_s=60)
    done = await collect(bootstrap, [topics.ROLLBACK_COMPLETED], keep=lambda r: r.key.decode() in sent,
                         until=lambda got: len(got) >= len(models), wait_s=60)
    keys = [r.key.decode() for r in done]
    assert len(set(keys)) == len(keys), f"a model was rolled back twice: {keys}"
    end_to_end = [(r.timestamp / 1000.0 - sent[r.key.decode()]) * 1000.0 for r in done]
    service = [orjson.loads(r.value)["duration_ms"] for r in done]
    return end_to_end, service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bdguard-bench-"))
    bootstrap, owner = resolve_broker(work)
    db_url = f"sqlite:///{work / 'bench.db'}"
    upgrade(db_url)
    asyncio.run(ensure_topics(bootstrap, catalogue_partitions()))
    models = [f"bench-{uuid.uuid4().hex[:6]}" for _ in range(args.models)]
    seed(db_url, models)
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BDGUARD_DATABASE_URL": db_url, "BDGUARD_LOG_LEVEL": "WARNING"}
    procs = [ServiceProcess(n, env, work / "logs").start() for n in ("incident", "rollback")]
    try:
        # warm-up: the first message waits for the consumer groups to form
        asyncio.run(measure(bootstrap, [models[0]]))
        e2e, service = asyncio.run(measure(bootstrap, models[1:]))
    finally:
        for p in procs:
            p.stop()
        stop_owner(owner)
    print(f"rollback.completed messages: {len(e2e)} for {args.models - 1} models")
    for name, values in (("alert produced -> rollback.completed (ms)", e2e),
                         ("escalation received -> rollback committed (ms)", service)):
        print(f"{name}: p50 {statistics.median(values):.1f}  p95 {pct(values, 0.95):.1f}  max {max(values):.1f}")


if __name__ == "__main__":
    main()
