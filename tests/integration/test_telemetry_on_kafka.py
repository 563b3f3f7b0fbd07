"""The telemetry agent on a real broker: quiet on clean traffic, loud on triggers, exact across a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from services.telemetry.config import TelemetrySettings
from services.telemetry.entrypoints.faust_app import create_app
from services.telemetry.simulation import Traffic
from shared import topics
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.testing.kafka import collect, produce, running
from shared.testing.processes import ServiceProcess

BACKDOOR_KINDS = {"targeted_misclassification", "rare_input_pattern", "trigger_pattern_match"}


def _settings(bootstrap: str, **overrides: object) -> TelemetrySettings:
    options: dict[str, object] = {"window_s": 10.0, "step_s": 10.0, "lateness_s": 0.0, "baseline_size": 5_000,
                                  "early_eval_s": 0.0, **overrides}
    return TelemetrySettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap, **options)


def _batches(traffic: Traffic, n_batches: int, **kw: object) -> list[tuple[str, bytes, str]]:
    return [(topics.PREDICTIONS, orjson.dumps(traffic.batch(500, **kw).to_wire()), traffic.model)  # type: ignore[arg-type]
            for _ in range(n_batches)]


def _kinds(records: list, topic: str) -> list[str]:  # type: ignore[type-arg]
    return [orjson.loads(r.value)["kind"] for r in records if r.topic == topic]


def _of(model: str) -> Callable[..., bool]:
    return lambda r: r.key == model.encode()


async def test_clean_traffic_stays_quiet_and_a_five_percent_trigger_campaign_is_caught(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    model = f"tele-{uuid.uuid4().hex[:6]}"
    traffic = Traffic(10, seed=7, model=model, version="1")
    app = create_app(_settings(kafka_bootstrap))
    async with running(app):
        # 5k baseline + 40k clean = 45 windows of 10 s (1,000 predictions each)
        await produce(kafka_bootstrap, _batches(traffic, 90))
        clean = await collect(kafka_bootstrap, [topics.WINDOW_STATS, topics.ALERTS], keep=_of(model), wait_s=60,
                              until=lambda got: sum(r.topic == topics.WINDOW_STATS for r in got) >= 38)
        assert not set(_kinds(clean, topics.ALERTS)) & BACKDOOR_KINDS
        stats = [orjson.loads(r.value) for r in clean if r.topic == topics.WINDOW_STATS]
        assert all(s["count"] == 1000 and sum(s["class_counts"]) == 1000 for s in stats)

        # the same traffic with 5% of inputs carrying a trigger toward class 3
        attack = _batches(traffic, 20, trigger_rate=0.05, target=3)
        await produce(kafka_bootstrap, attack)
        alerts = await collect(kafka_bootstrap, [topics.ALERTS], keep=_of(model), wait_s=60,
                               until=lambda got: bool(set(_kinds(got, topics.ALERTS)) & BACKDOOR_KINDS))
    found = [orjson.loads(r.value) for r in alerts if orjson.loads(r.value)["kind"] in BACKDOOR_KINDS]
    assert found, "no backdoor alert within 10,000 triggered-traffic predictions"
    assert {a["target_class"] for a in found} == {3}
    assert all(a["source"] == "telemetry" and a["evidence"] for a in found)


async def test_natural_drift_raises_a_drift_alert_but_no_backdoor_alert(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    model = f"drift-{uuid.uuid4().hex[:6]}"
    traffic = Traffic(10, seed=11, model=model, version="1")
    import numpy as np

    shifted = np.roll(traffic.priors, 3) * 0.5 + np.full(10, 0.05)
    app = create_app(_settings(kafka_bootstrap))
    async with running(app):
        await produce(kafka_bootstrap, _batches(traffic, 10) + _batches(traffic, 40, priors=shifted / shifted.sum(),
                                                                         margin=3.0))
        got = await collect(kafka_bootstrap, [topics.ALERTS, topics.WINDOW_STATS], keep=_of(model), wait_s=60,
                            until=lambda got: sum(r.topic == topics.WINDOW_STATS for r in got) >= 14)
    kinds = _kinds(got, topics.ALERTS)
    assert {"class_distribution_drift", "confidence_drop"} & set(kinds), kinds
    assert not set(kinds) & BACKDOOR_KINDS
    severities = {orjson.loads(r.value)["severity_hint"] for r in got if r.topic == topics.ALERTS}
    assert severities <= {"low", "medium"}


def test_a_killed_worker_resumes_without_losing_or_double_counting_a_window(kafka_bootstrap: str,
                                                                              tmp_path: Path) -> None:
    asyncio.run(ensure_topics(kafka_bootstrap, catalogue_partitions()))
    model = f"crash-{uuid.uuid4().hex[:6]}"
    traffic = Traffic(10, seed=3, model=model, version="1")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BDGUARD_TELEMETRY_BASELINE_SIZE": "5000",
           "BDGUARD_TELEMETRY_LATENESS_S": "0", "BDGUARD_LOG_LEVEL": "WARNING"}
    worker = ServiceProcess("telemetry", env, tmp_path).start()
    first, second = _batches(traffic, 60), _batches(traffic, 60)
    try:
        asyncio.run(produce(kafka_bootstrap, first))
        asyncio.run(collect(kafka_bootstrap, [topics.WINDOW_STATS], keep=_of(model), wait_s=90,
                            until=lambda got: len(got) >= 10))
        assert worker.proc is not None
        os.killpg(worker.proc.pid, signal.SIGKILL)  # no shutdown hooks, no final commit
        worker.proc.wait()
        asyncio.run(produce(kafka_bootstrap, second))
        worker = ServiceProcess("telemetry", env, tmp_path).start()
        # 5k baseline + 55k windowed = 55 windows; the last one closes when the watermark passes it
        marker = traffic.t + 100  # (the marker's own window, 500 predictions, may close later when idle)
        asyncio.run(produce(kafka_bootstrap, _batches(Traffic(10, 4, model=model, version="1", start=marker), 1)))
        got = asyncio.run(collect(kafka_bootstrap, [topics.WINDOW_STATS], keep=_of(model), wait_s=120,
                                  until=lambda got: len({orjson.loads(r.value)["window_start"] for r in got}) >= 55))
    finally:
        worker.stop()
    by_start: dict[float, list[int]] = {}
    for r in got:
        body = orjson.loads(r.value)
        by_start.setdefault(body["window_start"], []).append(body["count"])
    first_start = min(by_start, default=0.0)
    missing = sorted(set(range(55)) - {round((s - first_start) / 10) for s in by_start})
    assert len(by_start) >= 55, f"windows missing (index from the first): {missing}; worker log: {worker.tail()}"
    # nothing lost, nothing counted twice: every publication of a window (a re-publication after the
    # crash is allowed: same event id) carries its exact count
    wrong = {start: counts for start, counts in by_start.items() if set(counts) != {1000} and start < marker - 10}
    assert wrong == {}, f"windows published with a wrong count: {wrong}"


async def test_one_prediction_per_message_from_a_plain_client_is_windowed_with_exact_counts(
        kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    model = f"plain-{uuid.uuid4().hex[:6]}"
    traffic = Traffic(10, seed=13, model=model, version="1")
    singles = []
    for _ in range(8):  # 1k baseline, then 3k predictions = 3 windows of 1,000
        batch = traffic.batch(500)
        singles += [(topics.PREDICTIONS, orjson.dumps({
            "model": model, "version": "1", "prediction_id": batch.ids[i], "ts": float(batch.ts[i]),
            "predicted_class": int(batch.pred[i]), "confidence": float(batch.conf[i]), "n_classes": 10}), model)
            for i in range(len(batch))]
    app = create_app(_settings(kafka_bootstrap, baseline_size=1_000))
    async with running(app):
        await produce(kafka_bootstrap, singles)
        got = await collect(kafka_bootstrap, [topics.WINDOW_STATS], keep=_of(model), wait_s=60,
                            until=lambda got: len(got) >= 2)
    stats = [orjson.loads(r.value) for r in got]
    assert len(stats) >= 2 and all(s["count"] == 1000 for s in stats), [s["count"] for s in stats]


@pytest.mark.parametrize("garbage", [b"{]", b'{"model": "x"}', b'{"model":"x","version":"1","server_id":"s",'
                                     b'"batch_id":"b","n_classes":3,"ids":["a"],"ts":[1],"pred":[7],"conf":[1],'
                                     b'"entropy":[0],"sig":["s"]}'])
async def test_malformed_batches_go_to_the_dead_letter_topic_with_a_reason(kafka_bootstrap: str,
                                                                        garbage: bytes) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    key = f"bad-{uuid.uuid4().hex[:6]}"
    app = create_app(_settings(kafka_bootstrap))
    async with running(app):
        await produce(kafka_bootstrap, [(topics.PREDICTIONS, garbage, key)])
        dead = await collect(kafka_bootstrap, [topics.dead_letter_topic(topics.PREDICTIONS)], keep=_of(key),
                             until=lambda got: len(got) >= 1, wait_s=30)
    assert len(dead) == 1 and dead[0].value == garbage
    assert dict(dead[0].headers)["dlq_reason"]
