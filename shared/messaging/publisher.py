"""aiokafka producer wrapper: idempotent, acks=all, started and stopped explicitly."""

from __future__ import annotations

from typing import Protocol

from aiokafka import AIOKafkaProducer

from shared.messaging.envelope import OutgoingMessage


class Publisher(Protocol):
    async def publish(self, message: OutgoingMessage) -> None: ...


async def publish_all(publisher: Publisher, messages: list[OutgoingMessage]) -> None:
    """Publish in order and return once the broker has all of them: one round trip for the lot when the
    publisher can pipeline (``publish_all`` of its own), one per message otherwise."""
    pipelined = getattr(publisher, "publish_all", None)
    if pipelined is not None:
        await pipelined(messages)
        return
    for message in messages:
        await publisher.publish(message)


class KafkaPublisher:
    def __init__(self, bootstrap_servers: str, *, client_id: str = "bdguard", linger_ms: int = 5) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, client_id=client_id,
                                          acks="all", enable_idempotence=True, linger_ms=linger_ms)

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:  # an unreachable broker: close what start() opened, or it leaks a warning
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, message: OutgoingMessage) -> None:
        await self._producer.send_and_wait(message.topic, message.value,
                                           key=message.key.encode() if message.key is not None else None,
                                           headers=list(message.headers), partition=message.partition)


class RecordingPublisher:
    """In-process publisher for unit tests of handlers (the bus itself is tested on a real broker)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def publish(self, message: OutgoingMessage) -> None:
        self.sent.append(message)
