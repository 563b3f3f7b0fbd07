"""Helpers for tests and benchmarks that talk to a real broker (never a stand-in)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from shared.messaging.envelope import OutgoingMessage


@asynccontextmanager
async def running(app: Any, wait_s: float = 60.0) -> AsyncIterator[Any]:
    """Start a faust app in this event loop and stop it afterwards."""
    await asyncio.wait_for(app.start(), wait_s)
    try:
        yield app
    finally:
        await asyncio.wait_for(app.stop(), wait_s)


async def produce(bootstrap: str, messages: list[OutgoingMessage | tuple[str, bytes, str | None]]) -> None:
    """Send messages like an outside producer would (aiokafka, no faust)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for m in messages:
            if isinstance(m, OutgoingMessage):
                await producer.send_and_wait(m.topic, m.value, key=(m.key or "").encode(), headers=list(m.headers))
            else:
                topic, value, key = m
                await producer.send_and_wait(topic, value, key=key.encode() if key else None)
    finally:
        await producer.stop()


async def collect(bootstrap: str, topics: list[str], *, until: Callable[[list[ConsumerRecord]], bool],
                  keep: Callable[[ConsumerRecord], bool] = lambda _: True,
                  wait_s: float = 30.0) -> list[ConsumerRecord]:
    """Read topics from the beginning with a plain consumer until ``until(kept)`` or the timeout."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"collect-{uuid.uuid4().hex[:8]}", enable_auto_commit=False)
    await consumer.start()
    kept: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not until(kept):
            batches = await consumer.getmany(timeout_ms=200)
            kept.extend(r for records in batches.values() for r in records if keep(r))
    finally:
        await consumer.stop()
    return kept


async def eventually(check: Callable[[], bool], *, wait_s: float = 30.0, every_s: float = 0.2) -> bool:
    """Poll ``check`` until it holds or the time is up (for state another process writes)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every_s)
    return check()
