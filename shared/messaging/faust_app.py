"""faust app factory and raw-bytes topics (so that decoding, validation and DLQ are ours)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from shared.contracts.validation import decode_record
from shared.messaging.delivery import RawEvent, deliver, deliver_group
from shared.messaging.rekey import deliver_copies
from shared.settings import ServiceSettings


def create_faust_app(app_id: str, settings: ServiceSettings, **overrides: Any) -> faust.App:
    """Build (not start) a faust app for one service; nothing connects until the worker starts."""
    options: dict[str, Any] = {
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        "store": "memory://",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": 1,
        "web_enabled": False,
        "autodiscover": False,
        "producer_acks": -1,
        "broker_commit_every": 100,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        "table_cleanup_interval": 5.0,
    }
    options.update(overrides)
    return faust.App(app_id, **options)


def raw_topic(app: faust.App, name: str, **kwargs: Any) -> Any:
    """A topic whose values and keys reach the agent as the original bytes."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     **kwargs)


class FaustPublisher:
    """Publisher that sends through the app's own producer and returns once the broker has the message.

    Waiting for the acknowledgement is what lets a caller order its writes: an outbox row is marked
    sent, or a monitor state that no longer holds a closed window is written, only after the message
    that carries it is durable (a crash in between then repeats the message rather than losing it).
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}

    async def publish(self, message: Any) -> None:
        await self.publish_all([message])

    async def publish_all(self, messages: list[Any]) -> None:
        """Hand every message to the producer in order, then wait for all the acknowledgements at once."""
        deliveries = []
        for message in messages:
            topic = self._topics.get(message.topic)
            if topic is None:
                topic = self._topics[message.topic] = raw_topic(self.app, message.topic)
            deliveries.append(await topic.send(key=message.key.encode() if message.key is not None else None,
                                               value=message.value, headers=list(message.headers),
                                               partition=message.partition))
        await asyncio.gather(*deliveries)


def register_agent(app: faust.App, *, topic: str, name: str, handle: Any, publisher: Any,
                   decode: Any = None, concurrency: int = 1) -> Any:
    """One agent per input topic: raw bytes in, :func:`shared.messaging.delivery.deliver` per event.

    Offsets are acknowledged after ``deliver`` returns, so a crash mid-message redelivers it
    (handlers are idempotent on the CloudEvents id).
    """

    source = raw_topic(app, topic)

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await deliver(topic=topic, consumer=name, value=event.value, key=event.key, headers=event.headers,
                          partition=event.message.partition, offset=event.message.offset, handle=handle,
                          publisher=publisher, decode=decode or decode_record)

    agent.__name__ = agent.__qualname__ = name
    return app.agent(source, name=name, concurrency=concurrency)(agent)


def register_group_agent(app: faust.App, *, topic: str, name: str, handle: Any, publisher: Any, decode: Any,
                         max_events: int = 64, within_s: float = 0.02, copies_of: str | None = None,
                         partitions: int | None = None) -> Any:
    """Like :func:`register_agent`, but the handler gets up to ``max_events`` messages at a time (whatever
    arrived within ``within_s``), so per-update costs are paid once per group under load. Offsets are
    acknowledged after the group's handler returns.

    ``copies_of``: ``topic`` is an internal topic (the app declares it with ``partitions``) holding copies
    of that topic's messages (see :mod:`shared.messaging.rekey`); each is handled as the message it copies.
    """
    source = raw_topic(app, topic) if copies_of is None else raw_topic(app, topic, internal=True,
                                                                      partitions=partitions)

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(max_events, within=within_s):
            raw = [RawEvent(e.value, e.key, e.headers, e.message.partition, e.message.offset) for e in events]
            if copies_of is None:
                await deliver_group(topic=topic, consumer=name, events=raw, handle=handle, publisher=publisher,
                                    decode=decode)
            else:
                await deliver_copies(topic=topic, source_topic=copies_of, consumer=name, events=raw, handle=handle,
                                     publisher=publisher, decode=decode)

    agent.__name__ = agent.__qualname__ = name
    return app.agent(source, name=name)(agent)
