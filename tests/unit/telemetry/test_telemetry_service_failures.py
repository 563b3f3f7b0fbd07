"""A group whose outputs cannot be published leaves the durable state in charge."""

from __future__ import annotations

import pytest

from services.telemetry.bootstrap import InMemoryStore, TelemetryService
from services.telemetry.service_layer.monitor import WindowConfig
from services.telemetry.service_layer.wire import DecodedBatch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import OutgoingMessage


class TrackingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.stale_marks = 0

    def mark_stale(self) -> None:
        self.stale_marks += 1


class BrokenPublisher:
    async def publish(self, message: OutgoingMessage) -> None:
        raise ConnectionError("broker unreachable")


def _delivery(traffic: Traffic, offset: int) -> Delivery:
    attrs = CloudEventAttributes.for_topic(topics.PREDICTIONS, source="urn:test", event_id=f"e{offset}",
                                           subject="m/1")
    return Delivery(DecodedBatch(traffic.batch(500)), attrs, topics.PREDICTIONS, 0, offset)


async def test_when_outputs_cannot_be_published_the_stores_are_reloaded_before_the_next_group() -> None:
    states, baselines = TrackingStore(), TrackingStore()
    cfg = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=1_000, early_eval_s=0.0)
    service = TelemetryService(cfg, states, baselines, BrokenPublisher())
    traffic = Traffic(10, seed=3, model="m")
    await service.on_batches([_delivery(traffic, i) for i in range(2)])  # baseline only: nothing to publish
    assert states.stale_marks == 0 and service.counters["batches"] == 2
    with pytest.raises(ConnectionError):  # closes a window: its statistics cannot be sent
        await service.on_batches([_delivery(traffic, i) for i in range(2, 8)])
    assert states.stale_marks == 1 and baselines.stale_marks == 1
    assert service.counters["batches"] == 2  # nothing of the failed group counted
