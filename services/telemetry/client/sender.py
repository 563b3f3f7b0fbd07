"""The one module of the client that imports aiokafka; tests substitute a fake :class:`Sender`."""

from __future__ import annotations

from typing import Protocol

from aiokafka import AIOKafkaProducer

Headers = list[tuple[str, bytes]]


class Sender(Protocol):
    async def start(self) -> None: ...

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None: ...

    async def stop(self) -> None: ...


class AioKafkaSender:
    """aiokafka producer; ``linger_ms`` here only tunes aiokafka's own per-partition batching."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "bdguard-telemetry",
                 request_timeout_ms: int = 10_000) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, client_id=client_id, acks=1,
            compression_type=None, linger_ms=5, max_request_size=8 * 1024 * 1024,
            request_timeout_ms=request_timeout_ms,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def stop(self) -> None:
        await self._producer.stop()
