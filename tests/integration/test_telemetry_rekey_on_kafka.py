"""Two telemetry workers in one group, fed by a producer that sets no key: every window once, full count."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from services.telemetry.simulation import Traffic
from shared import topics
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.testing.kafka import collect
from shared.testing.processes import ServiceProcess

GROUP = "bdguard-telemetry"  # the worker's faust app id: its consumer group
REKEYED = f"{GROUP}-predictions-by-model"  # where a worker forwards predictions off their model's partition
T0 = 1_700_000_000.0
WINDOWS, PER_WINDOW = 8, 1_000  # 100 predictions per second of event time, 10 s windows


async def _group(bootstrap: str) -> tuple[str, int]:
    """State and member count of the workers' consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = (await admin.describe_consumer_groups([GROUP]))[0].to_object()["groups"][0]
        return described["state"], len(described["members"])
    except KafkaError:  # a fresh broker: no group coordinator yet
        return "", 0
    finally:
        await admin.close()


async def _both_working(bootstrap: str, wait_s: float = 120.0) -> bool:
    """True once the group is stable with two members (three partitions: each worker owns some)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await _group(bootstrap) == ("Stable", 2):
            return True
        await asyncio.sleep(0.5)
    return False


async def _partition_counts(bootstrap: str, names: list[str]) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        return [described[name] for name in names]
    finally:
        await admin.close()


async def _drained(bootstrap: str, wait_s: float = 90.0) -> bool:
    """True once the group has committed every message of the predictions topic and of the topic that
    predictions are forwarded to (an offset is committed only after its message was handled)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in (topics.PREDICTIONS, REKEYED) if t in existing])
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        assert len(tps) >= 3, f"partitions to wait for: {tps}"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            ends, done = await consumer.end_offsets(tps), await admin.list_consumer_group_offsets(GROUP)
            if all(ends[tp] == 0 or (tp in done and done[tp].offset >= ends[tp]) for tp in tps):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await consumer.stop()
        await admin.close()


async def _spread(bootstrap: str, traffic: Traffic, n_batches: int) -> None:
    """Batches of 100 with no key, round robin over every partition (an inference server we did not write)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topics.PREDICTIONS))
        for i in range(n_batches):
            await producer.send_and_wait(topics.PREDICTIONS, orjson.dumps(traffic.batch(100).to_wire()), key=None,
                                         partition=partitions[i % len(partitions)])
    finally:
        await producer.stop()


def _window_stats(records: list[ConsumerRecord]) -> dict[str, set[tuple[float, int]]]:
    """Event id -> every (window start, count) published under it."""
    found: dict[str, set[tuple[float, int]]] = {}
    for r in records:
        body = orjson.loads(r.value)
        found.setdefault(dict(r.headers)["ce_id"].decode(), set()).add((body["window_start"], body["count"]))
    return found


def test_two_workers_fed_by_an_unkeyed_producer_publish_each_window_once_with_its_full_count(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    asyncio.run(ensure_topics(kafka_bootstrap, catalogue_partitions()))
    model = f"rekey-{uuid.uuid4().hex[:6]}"
    traffic = Traffic(10, seed=29, model=model, version="1", start=T0)
    # the lateness outlasts the whole run's event time, so no arrival order can make a prediction late;
    # windows close only when the last batch, far ahead, moves the watermark (the idle close stays away)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BDGUARD_TELEMETRY_BASELINE_SIZE": "1000",
           "BDGUARD_TELEMETRY_WINDOW_S": "10", "BDGUARD_TELEMETRY_STEP_S": "10",
           "BDGUARD_TELEMETRY_LATENESS_S": "300", "BDGUARD_TELEMETRY_IDLE_CLOSE_S": "0",
           "BDGUARD_LOG_LEVEL": "WARNING"}
    workers = [ServiceProcess("telemetry", env, tmp_path / name).start() for name in ("a", "b")]
    logs = lambda: "\n".join(w.tail(1500) for w in workers)  # noqa: E731
    try:
        assert asyncio.run(_both_working(kafka_bootstrap)), f"two workers never shared the group: {logs()}"
        asyncio.run(_spread(kafka_bootstrap, traffic, 10))  # the baseline: [T0, T0 + 10)
        assert asyncio.run(_drained(kafka_bootstrap)), f"baseline not handled: {logs()}"
        asyncio.run(_spread(kafka_bootstrap, traffic, WINDOWS * 10))  # [T0 + 10, T0 + 90)
        assert asyncio.run(_drained(kafka_bootstrap)), f"traffic not handled: {logs()}"
        traffic.t += 400  # past the lateness: closes every window above
        asyncio.run(_spread(kafka_bootstrap, traffic, 1))
        expected = {T0 + 10 * (i + 1) for i in range(WINDOWS)}
        asyncio.run(collect(kafka_bootstrap, [topics.WINDOW_STATS], keep=lambda r: r.key == model.encode(),
                            until=lambda got: {orjson.loads(r.value)["window_start"] for r in got} >= expected,
                            wait_s=90))
        time.sleep(2.0)  # a second worker's copy of a window, if any, has had time to come out
        got = asyncio.run(collect(kafka_bootstrap, [topics.WINDOW_STATS], keep=lambda r: r.key == model.encode(),
                                  until=lambda _: False, wait_s=4))
        assert all(w.alive() for w in workers), f"a worker died: {logs()}"
    finally:
        for w in workers:
            w.stop()
    published = _window_stats(got)
    counts: dict[float, list[int]] = {}
    for versions in published.values():
        for start, count in versions:
            counts.setdefault(start - T0, []).append(count)
    assert set(counts) == {s - T0 for s in expected}, f"counts by window (T0 + s): {counts}; logs: {logs()}"
    # one record per event id (a repeat would have to carry the same count), and that count is the full one
    assert {i: v for i, v in published.items() if len(v) > 1} == {}
    assert {start: c for start, c in counts.items() if c != [PER_WINDOW]} == {}
    # partition p of both topics went to one worker: they have as many partitions, and no worker said otherwise
    assert asyncio.run(_partition_counts(kafka_bootstrap, [topics.PREDICTIONS, REKEYED])) == [3, 3]
    assert not [w for w in workers if "not co-partitioned" in w.tail(10**7)]
