"""Telemetry throughput and alert latency on a real broker, in one run.

(a) raw aiokafka consume rate of the predictions topic (getmany + orjson.loads), and
(b) the telemetry pipeline's processing rate (faust agent: decode, baseline, windows, early
evaluation, window close), over the same N predictions; then their ratio. Then alert latency: a
5% trigger campaign starts on a model that has its baseline; from the first triggered batch produced
to the first backdoor alert on the alert topic, p50/p99 over several campaigns. Memory: peak RSS.

    python -m benchmarks.telemetry_throughput [--predictions 400000] [--batch 500] [--trials 10]

Starts its own local broker (fresh topics) unless KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.telemetry.config import TelemetrySettings
from services.telemetry.entrypoints.faust_app import build
from services.telemetry.simulation import Traffic
from shared import topics
from shared.broker.resolve import resolve_broker, stop_owner
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.testing.kafka import collect, running

BACKDOOR = {"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match"}


async def produce_all(bootstrap: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20, acks=1)
    await producer.start()
    began = time.perf_counter()
    try:
        futures = [await producer.send(topics.PREDICTIONS, value, key=key) for key, value in payloads]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def raw_consume(bootstrap: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(topics.PREDICTIONS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"raw-{uuid.uuid4().hex[:6]}", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    seen, began = 0, None
    try:
        while seen < expected:
            for records in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                began = began or time.perf_counter()
                for r in records:
                    seen += len(orjson.loads(r.value)["ids"])
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - (began or time.perf_counter()))


async def pipeline(settings: TelemetrySettings, expected: int) -> tuple[float, int]:
    app, service = build(settings, app_id=f"bench-telemetry-{uuid.uuid4().hex[:6]}")
    async with running(app):
        first = None
        while service.counters["predictions"] < expected:
            if first is None and service.counters["batches"]:
                first = (time.perf_counter(), service.counters["predictions"])
            await asyncio.sleep(0.005)
        end = time.perf_counter()
    assert first is not None
    return (expected - first[1]) / (end - first[0]), service.counters["alerts"]


async def alert_latency(settings: TelemetrySettings, bootstrap: str, trials: int, batch: int) -> list[float]:
    app, _ = build(settings, app_id=f"bench-latency-{uuid.uuid4().hex[:6]}")
    latencies = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    async with running(app):
        for trial in range(-1, trials):  # trial -1 warms up: consumer group join, first fetch
            model = f"lat-{trial + 1}-{uuid.uuid4().hex[:4]}"
            traffic = Traffic(10, seed=101 + trial, model=model, version="1", start=time.time() - 60,
                              spacing_s=60 / (12_000))
            for _ in range(24):  # baseline (10k) and some clean traffic, event time up to now
                await producer.send_and_wait(topics.PREDICTIONS, orjson.dumps(traffic.batch(batch).to_wire()),
                                             key=model.encode())
            traffic.t, traffic.spacing_s = time.time(), 0.0001
            started = time.time()
            for _ in range(40):  # ~5% triggered, a batch every 20 ms (25k predictions/s)
                await producer.send_and_wait(topics.PREDICTIONS, orjson.dumps(
                    traffic.batch(batch, trigger_rate=0.05, target=3).to_wire()), key=model.encode())
                await asyncio.sleep(0.02)
            got = await collect(bootstrap, [topics.ALERTS], keep=lambda r, m=model: r.key == m.encode(),
                                until=lambda rs: any(orjson.loads(r.value)["kind"] in BACKDOOR for r in rs),
                                wait_s=30)
            hits = [r.timestamp / 1000.0 for r in got if orjson.loads(r.value)["kind"] in BACKDOOR]
            if trial >= 0:
                latencies.append((min(hits) - started) * 1000.0 if hits else float("nan"))
    await producer.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bdguard-tele-"))
    bootstrap, owner = resolve_broker(work)
    settings = TelemetrySettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap, BDGUARD_LOG_LEVEL="WARNING")
    try:
        asyncio.run(ensure_topics(bootstrap, catalogue_partitions()))
        models = [Traffic(10, seed=s, model=f"thr-{s}", version="1") for s in range(6)]
        n_batches = args.predictions // args.batch
        payloads = [(m.model.encode(), orjson.dumps(m.batch(args.batch, trigger_rate=0.0).to_wire()))
                    for i in range(n_batches) for m in [models[i % len(models)]]]
        total = n_batches * args.batch
        produce_s = asyncio.run(produce_all(bootstrap, payloads))
        raw = asyncio.run(raw_consume(bootstrap, total))
        rate, alerts = asyncio.run(pipeline(settings, total))
        print(f"predictions: {total:,} in {n_batches:,} messages of {args.batch} ({len(models)} models, 3 partitions)")
        print(f"produce: {total / produce_s:,.0f} predictions/s")
        print(f"(a) raw aiokafka consume + orjson: {raw:,.0f} predictions/s")
        print(f"(b) telemetry pipeline (faust agent): {rate:,.0f} predictions/s  (alerts on clean traffic: {alerts})")
        print(f"ratio (b)/(a): {rate / raw:.2f}")
        lat = [v for v in asyncio.run(alert_latency(settings, bootstrap, args.trials, args.batch)) if v == v]
        if lat:
            ordered = sorted(lat)
            p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            print(f"alert latency (first triggered batch produced -> backdoor alert published), "
                  f"{len(lat)}/{args.trials} campaigns caught: p50 {statistics.median(lat):.0f} ms, p99 {p99:.0f} ms")
        else:
            print(f"alert latency: no campaign caught in {args.trials} trials")
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process (broker excluded): {peak_mib:.0f} MiB")
    finally:
        stop_owner(owner)


if __name__ == "__main__":
    main()
