"""The telemetry state store on a real broker: durable writes, full read-back after a restart or a move."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from services.telemetry.adapters.kafka_state import KafkaStateStore


def _store(bootstrap: str, topic: str, producer: AIOKafkaProducer) -> KafkaStateStore:
    async def send(name: str, key: bytes, value: bytes, partition: int) -> None:
        await producer.send_and_wait(name, value, key=key, partition=partition)

    def same(d: dict[str, Any]) -> dict[str, Any]:
        return dict(d)

    return KafkaStateStore(bootstrap, topic, 3, encode=same, decode=same, send=send)


async def _loaded(bootstrap: str, topic: str, producer: AIOKafkaProducer) -> KafkaStateStore:
    """A store on ``topic`` that has read it back, as a (re)started worker's is."""
    store = _store(bootstrap, topic, producer)
    await store.load()
    return store


def _topic() -> str:
    return f"state-{uuid.uuid4().hex[:6]}"


@pytest_asyncio.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_new_worker_reads_back_the_latest_state_of_every_key(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    topic = f"state-{uuid.uuid4().hex[:6]}"
    first = _store(kafka_bootstrap, topic, producer)
    await first.load()  # creates the compacted topic; nothing in it yet
    assert first.get("m|1") is None
    for n in range(5):
        await first.put("m|1", {"n": n}, partition=1)
    await first.put("m|2", {"n": 42}, partition=7)  # partition folded onto the topic's 3
    restarted = _store(kafka_bootstrap, topic, producer)
    await restarted.load()
    assert restarted.get("m|1") == {"n": 4} and restarted.get("m|2") == {"n": 42}

    # another worker moved the partition on; after a reassignment this one reads its state again
    await restarted.put("m|1", {"n": 5}, partition=1)
    assert first.get("m|1") == {"n": 4}
    await first.load()  # not stale: no re-read
    assert first.get("m|1") == {"n": 4}
    first.mark_stale()
    await first.load()
    assert first.get("m|1") == {"n": 5}


async def test_a_key_written_on_several_partitions_reads_back_as_its_latest_write(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    # a producer without keys spreads one model version's predictions over every partition, and its
    # state is written on the partition of each group's last batch
    topic = _topic()
    store = await _loaded(kafka_bootstrap, topic, producer)
    for n, partition in enumerate([0, 1, 0, 2, 1, 0, 2, 1]):
        await store.put("m|1", {"n": n}, partition=partition)
    assert (await _loaded(kafka_bootstrap, topic, producer)).get("m|1") == {"n": 7}


async def test_writes_within_one_millisecond_on_two_partitions_keep_their_order(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    # the broker stamps records in milliseconds: back-to-back writes can tie on its timestamp (pinned
    # here), and whichever partition is read last must not win over the write made last
    async def send_in_one_millisecond(name: str, key: bytes, value: bytes, partition: int) -> None:
        await producer.send_and_wait(name, value, key=key, partition=partition, timestamp_ms=1_700_000_000_000)

    topic = _topic()
    store = await _loaded(kafka_bootstrap, topic, producer)
    store.send = send_in_one_millisecond
    for first, last in [(0, 2), (2, 0)]:  # one key ends on the lower partition, one on the higher
        key = f"m|{last}"
        await store.put(key, {"n": 1}, partition=first)
        await store.put(key, {"n": 2}, partition=last)
    restarted = await _loaded(kafka_bootstrap, topic, producer)
    assert restarted.get("m|0") == {"n": 2} and restarted.get("m|2") == {"n": 2}


async def test_records_from_before_write_stamps_still_read_back(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    topic = _topic()
    await _loaded(kafka_bootstrap, topic, producer)
    await producer.send_and_wait(topic, orjson.dumps({"n": 1}), key=b"m|old", partition=1)
    assert (await _loaded(kafka_bootstrap, topic, producer)).get("m|old") == {"n": 1}


async def test_a_reloaded_store_names_the_partition_of_each_keys_latest_write(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    # the idle sweep closes windows only for the keys on partitions its worker owns
    topic = _topic()
    store = await _loaded(kafka_bootstrap, topic, producer)
    await store.put("m|1", {"n": 1}, partition=0)
    await store.put("m|1", {"n": 2}, partition=2)  # moved: a keyless producer's next group
    await store.put("m|2", {"n": 1}, partition=4)  # folded onto partition 1 of the 3
    assert store.keys_on({2}) == {"m|1": 2} and store.keys_on({4}) == {"m|2": 1}
    restarted = await _loaded(kafka_bootstrap, topic, producer)
    assert restarted.keys_on({0, 1, 2}) == {"m|1": 2, "m|2": 1}
    assert restarted.keys_on({0}) == {} and restarted.keys_on({1}) == {"m|2": 1}
