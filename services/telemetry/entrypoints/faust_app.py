"""faust agents of the telemetry service: prediction batches → window stats and alerts.

``track_predictions`` windows the batches that arrive on their model's home partition and forwards the
others to the internal re-keyed topic; ``track_forwarded_predictions`` windows those there. Two agents
rather than one on both topics: forwarding holds no lock and waits on the broker, so it runs beside the
windowing instead of inside the same group, and each topic keeps its own delivery path (a forwarded copy
is handled as the original it copies, see shared/messaging/rekey.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.telemetry.adapters.kafka_state import KafkaStateStore
from services.telemetry.bootstrap import Rekey, TelemetryService, bootstrap
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


def rekeyed_topic(app_id: str) -> str:
    """The internal topic a worker forwards predictions to when they arrive off their model's partition."""
    return f"{app_id}-predictions-by-model"


def build(settings: TelemetrySettings, app_id: str = "bdguard-telemetry") -> tuple[faust.App, TelemetryService]:
    """The app and the service behind its agents (benchmarks read the service's counters)."""
    # batches are tens of KB each: fetch many per round trip instead of faust's 1 MiB per partition
    app = create_faust_app(app_id, settings, consumer_max_fetch_size=16 * 1024**2)
    send = _acknowledged_send(app)
    # state per model version in compacted topics of our own (why not faust tables: kafka_state.py),
    # written on the model's home partition (service_layer/rekey.py) and re-read after every partition
    # assignment; the idle sweep closes windows only for the models whose home partition this worker owns
    states = KafkaStateStore(settings.kafka_bootstrap_servers, f"{app_id}-monitor-state", settings.topic_partitions,
                             encode=MonitorState.to_dict, decode=MonitorState.from_dict, send=send)
    baselines = KafkaStateStore(settings.kafka_bootstrap_servers, f"{app_id}-baselines", settings.topic_partitions,
                                encode=Baseline.to_dict, decode=Baseline.from_dict, send=send)
    rekey = Rekey(rekeyed_topic(app_id), settings.topic_partitions)

    service = bootstrap(settings, FaustPublisher(app), states, baselines, rekey)

    # faust sends each signal with the set of topic partitions assigned (the whole new assignment) or revoked
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        inputs, copies = _partitions(args[0], topics.PREDICTIONS), _partitions(args[0], rekey.topic)
        if inputs != copies:
            # faust gives partition p of both topics to one worker only when they have as many partitions
            log.error("predictions and their re-keyed copies are not co-partitioned: a model version may be "
                      "windowed by two workers; give both topics BDGUARD_TOPIC_PARTITIONS partitions",
                      predictions=sorted(inputs), rekeyed=sorted(copies), expected=settings.topic_partitions)
        await service.partitions_assigned(inputs)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await service.partitions_revoked(_partitions(args[0], topics.PREDICTIONS))

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    if service.idle.enabled:  # a timer of the app: it starts with the worker, nothing runs at import
        app.timer(interval=settings.idle_sweep_s, name="close_idle_windows")(_idle_sweep(service))
    # a group of batches per update: under load the window math runs once per model version per group;
    # batches off their model's home partition are forwarded to it, and windowed by the second agent there
    options: dict[str, Any] = {"publisher": service.publisher, "decode": decode_batch,
                               "max_events": settings.group_max_batches, "within_s": settings.group_within_s}
    register_group_agent(app, topic=topics.PREDICTIONS, name="track_predictions", handle=service.on_predictions,
                         **options)
    register_group_agent(app, topic=rekey.topic, name="track_forwarded_predictions", handle=service.on_batches,
                         copies_of=topics.PREDICTIONS, partitions=settings.topic_partitions, **options)
    return app, service


def _partitions(assigned: Any, topic: str) -> set[int]:
    return {tp.partition for tp in assigned if tp.topic == topic}


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
