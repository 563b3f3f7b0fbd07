"""faust agent of the telemetry service: prediction batches → window stats and alerts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.telemetry.adapters.kafka_state import KafkaStateStore
from services.telemetry.bootstrap import TelemetryService, bootstrap
from services.telemetry.config import TelemetrySettings
from services.telemetry.domain.baseline import Baseline
from services.telemetry.service_layer.monitor import MonitorState
from services.telemetry.service_layer.wire import decode_batch
from shared import topics
from shared.logging import get_logger
from shared.messaging.faust_app import FaustPublisher, create_faust_app, raw_topic, register_group_agent

log = get_logger(__name__)


def create_app(settings: TelemetrySettings) -> faust.App:
    return build(settings)[0]


def build(settings: TelemetrySettings, app_id: str = "bdguard-telemetry") -> tuple[faust.App, TelemetryService]:
    """The app and the service behind its agent (benchmarks read the service's counters)."""
    # batches are tens of KB each: fetch many per round trip instead of faust's 1 MiB per partition
    app = create_faust_app(app_id, settings, consumer_max_fetch_size=16 * 1024**2)
    send = _acknowledged_send(app)
    # state per model version in compacted topics of our own (why not faust tables: kafka_state.py);
    # co-partitioned with the predictions topic, re-read after every partition assignment; the idle
    # sweep closes windows only for the keys on the predictions partitions this worker owns
    states = KafkaStateStore(settings.kafka_bootstrap_servers, f"{app_id}-monitor-state", settings.topic_partitions,
                             encode=MonitorState.to_dict, decode=MonitorState.from_dict, send=send)
    baselines = KafkaStateStore(settings.kafka_bootstrap_servers, f"{app_id}-baselines", settings.topic_partitions,
                                encode=Baseline.to_dict, decode=Baseline.from_dict, send=send)

    service = bootstrap(settings, FaustPublisher(app), states, baselines)

    # faust sends each signal with the set of topic partitions assigned (the whole new assignment) or revoked
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await service.partitions_assigned(_predictions(args[0]))

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await service.partitions_revoked(_predictions(args[0]))

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    if service.idle.enabled:  # a timer of the app: it starts with the worker, nothing runs at import
        app.timer(interval=settings.idle_sweep_s, name="close_idle_windows")(_idle_sweep(service))
    # a group of batches per update: under load the window math runs once per model version per group
    register_group_agent(app, topic=topics.PREDICTIONS, name="track_predictions", handle=service.on_batches,
                         publisher=service.publisher, decode=decode_batch, max_events=settings.group_max_batches,
                         within_s=settings.group_within_s)
    return app, service


def _predictions(partitions: Any) -> set[int]:
    return {tp.partition for tp in partitions if tp.topic == topics.PREDICTIONS}


def _idle_sweep(service: TelemetryService) -> Callable[[], Awaitable[None]]:
    async def close_idle_windows() -> None:
        try:
            await service.close_idle_windows()
        except Exception as exc:  # the broker is away: the next tick starts again from the durable state
            log.warning("idle close failed; the next sweep retries", error=str(exc))

    return close_idle_windows


def _acknowledged_send(app: faust.App) -> Any:
    """Send through the app's producer and return once the broker has the record."""
    cache: dict[str, Any] = {}

    async def send(topic: str, key: bytes, value: bytes, partition: int) -> None:
        channel = cache.get(topic) or cache.setdefault(topic, raw_topic(app, topic))
        delivery = await channel.send(key=key, value=value, partition=partition)
        await delivery

    return send
