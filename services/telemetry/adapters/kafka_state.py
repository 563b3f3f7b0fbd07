"""Monitor state in a compacted Kafka topic of our own, read back in full after a restart or rebalance.

Why not a faust table: faust's in-memory store forgets keys across a rebalance. After recovery it
drops every key whose partition is not active, including partitions it just caught up on as a standby,
and when such a partition becomes active again, recovery resumes from the standby's position and never
re-reads them. A restarted worker joins a group that still holds its dead predecessor, so it goes
through exactly that sequence. The key was gone, a fresh state was built with the old baseline, and
the window in flight was published with part of its count.

Here the process keeps its own dict. Every write goes to the topic (key = model version, partition =
the model's home partition of the predictions topic, where it is windowed: service_layer/rekey.py) and is
acknowledged by the broker before the input offsets can be committed.
The whole topic is read back on the first access and after every partition assignment, so a
partition that moved between workers brings its latest state with it. The topic is compacted: one
record per key survives, so reading it back costs one state per model version.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.logging import get_logger

log = get_logger(__name__)
Encode = Callable[[Any], dict[str, Any]]
Decode = Callable[[dict[str, Any]], Any]
Send = Callable[[str, bytes, bytes, int], Any]  # topic, key, value, partition -> awaitable ack
WRITTEN_NS, STATE = "written_ns", "state"  # a record's value: {"written_ns": writer's clock, "state": {...}}


class KafkaStateStore:
    """``get``/``put`` per key, durable in ``topic``; ``mark_stale`` makes the next access re-read it;
    ``keys_on`` names the keys whose latest write sits on given partitions (the owner's keys)."""

    def __init__(self, bootstrap_servers: str, topic: str, partitions: int, *, encode: Encode, decode: Decode,
                 send: Send) -> None:
        self.bootstrap_servers, self.topic, self.partitions = bootstrap_servers, topic, partitions
        self.encode, self.decode, self.send = encode, decode, send
        self.data: dict[str, Any] = {}
        self.partition_of: dict[str, int] = {}  # the partition of each key's latest write
        self.stale = True
        self._last_written_ns = 0

    def mark_stale(self) -> None:
        self.stale = True

    async def load(self) -> None:
        """Re-read the topic when it is stale (first access, after a partition assignment)."""
        if not self.stale:
            return
        await self._ensure_topic()
        latest = await self._read_all()
        self.data = {key: value for key, (_, value) in latest.items()}
        self.partition_of = {key: partition for key, (partition, _) in latest.items()}
        self.stale = False
        log.info("state loaded", topic=self.topic, keys=len(self.data))

    def get(self, key: str) -> object | None:
        return self.data.get(key)

    def stored_keys(self) -> list[str]:
        return list(self.data)

    def keys_on(self, partitions: Collection[int]) -> dict[str, int]:
        """Keys last written on one of ``partitions`` (input partitions, folded onto this topic's like
        ``put`` folds them: the topics are co-partitioned), with that partition."""
        folded = {p % self.partitions for p in partitions}
        return {key: p for key, p in self.partition_of.items() if p in folded}

    async def put(self, key: str, value: object, partition: int) -> None:
        self.data[key], self.partition_of[key] = value, partition % self.partitions
        # the broker's timestamps are milliseconds, so two writes of one key on two partitions within the
        # same millisecond would tie on read-back: each record carries its own strictly increasing stamp
        self._last_written_ns = max(time.time_ns(), self._last_written_ns + 1)
        record = {WRITTEN_NS: self._last_written_ns, STATE: self.encode(value)}
        await self.send(self.topic, key.encode(), orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY),
                        partition % self.partitions)

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            if self.topic not in set(await admin.list_topics()):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(self.topic, self.partitions, 1,
                                                        topic_configs={"cleanup.policy": "compact"})])
        finally:
            await admin.close()

    async def _read_all(self) -> dict[str, tuple[int, Any]]:
        """Each key's latest state, decoded, with the partition it was written on."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024**2)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            # a key can sit on several partitions (written before predictions were re-keyed, when a producer
            # without keys spread a model version over all of them and the state followed each group's
            # partition; or before the partition count changed): the latest write wins (by offset within a
            # partition, by the writer's stamp across), not the partition read last
            latest: dict[str, tuple[int, int, dict[str, Any] | None]] = {}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        if r.key is None:
                            continue
                        key, state, written = self._unwrap(r.key, r.value, r.timestamp)
                        partition, seen_written, _ = latest.get(key, (r.partition, written, None))
                        if partition == r.partition or written >= seen_written:
                            latest[key] = (r.partition, written, state)
            return {key: (p, self.decode(state)) for key, (p, _, state) in latest.items() if state is not None}
        finally:
            await consumer.stop()

    @staticmethod
    def _unwrap(key: bytes, value: bytes | None, timestamp_ms: int) -> tuple[str, dict[str, Any] | None, int]:
        """Key, state (None for a tombstone) and write stamp in ns of one record; an unstamped record
        (written before stamps existed) is ordered by the broker's timestamp."""
        if value is None:
            return key.decode(), None, timestamp_ms * 1_000_000
        record = orjson.loads(value)
        if isinstance(record, dict) and set(record) == {WRITTEN_NS, STATE}:
            return key.decode(), record[STATE], int(record[WRITTEN_NS])
        return key.decode(), record, timestamp_ms * 1_000_000
