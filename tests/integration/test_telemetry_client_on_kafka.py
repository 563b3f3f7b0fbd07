"""Real-broker round trip of the telemetry client (the session broker: never skipped)."""

from __future__ import annotations

import uuid

import numpy as np
import orjson

from services.telemetry.client import TelemetryClient, TelemetrySettings
from services.telemetry.domain import PredictionBatch


async def test_recorded_predictions_arrive_as_one_columnar_message_with_cloudevents_headers(
        kafka_bootstrap: str) -> None:
    bootstrap = kafka_bootstrap
    from aiokafka import AIOKafkaConsumer

    topic = f"telemetry.predictions.v1.test-{uuid.uuid4().hex[:8]}"
    client = TelemetryClient(TelemetrySettings(bootstrap_servers=bootstrap, topic=topic, batch_size=64,
                                               linger_ms=50))
    await client.start()
    rng = np.random.default_rng(0)
    client.record("m", "1", rng.random((64, 3, 8, 8)), rng.dirichlet(np.ones(5), size=64))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        msg = await consumer.getone()
    finally:
        await consumer.stop()
        await client.stop()
    batch = PredictionBatch.from_wire(orjson.loads(msg.value))
    assert msg.key == b"m" and len(batch) == 64
    assert dict(msg.headers)["ce_id"].decode() == batch.batch_id


async def test_triggered_traffic_through_a_real_broker_raises_backdoor_alerts_in_the_domain(
        kafka_bootstrap: str) -> None:
    bootstrap = kafka_bootstrap
    from aiokafka import AIOKafkaConsumer

    from services.telemetry.domain import BaselineBuilder, WindowStats, evaluate_window

    topic = f"telemetry.predictions.v1.test-{uuid.uuid4().hex[:8]}"
    client = TelemetryClient(TelemetrySettings(bootstrap_servers=bootstrap, topic=topic, batch_size=500,
                                               linger_ms=50, signature_grid=(4, 4)))
    await client.start()
    rng = np.random.default_rng(1)

    def traffic(n: int, trigger_rate: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.random((n, 1, 16, 16))
        labels = rng.integers(0, 10, n)
        hit = rng.random(n) < trigger_rate
        x[hit, :, 12:, 12:] = 1.0
        labels[hit] = 3
        logits = rng.normal(0, 1, (n, 10))
        logits[np.arange(n), labels] += 6.0
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return x, probs

    for _ in range(20):
        client.record("m", "1", *traffic(500, 0.0))
    for _ in range(10):
        client.record("m", "1", *traffic(500, 0.05))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    builder, window, seen = BaselineBuilder(10_000), WindowStats(), 0
    try:
        while seen < 15_000:
            msg = await consumer.getone()
            batch = PredictionBatch.from_wire(orjson.loads(msg.value))
            seen += len(batch)
            if not builder.ready:
                builder.add(batch)
            else:
                window.add(batch)
    finally:
        await consumer.stop()
        await client.stop()
    report = evaluate_window(window, builder.build(), model="m", version="1")
    kinds = {a.kind: a for a in report.alerts}
    assert kinds["rare_input_pattern"].target_class == 3
    assert kinds["targeted_misclassification"].target_class == 3
