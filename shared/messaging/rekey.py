"""Re-keying (repartitioning) a topic: copies of its messages on the partition their key belongs to.

A consumer that keeps state per key needs every message of a key on one partition, hence one worker.
Producers we did not write may send no key or another key, so the messages of one key are spread over
every partition. The worker that consumes such a message forwards a copy to an internal topic with the
same partition count, on the partition Kafka's default partitioner gives the key (:func:`home_partition`,
where a producer keying by it lands anyway); the consumer group assigns partition ``p`` of both topics
to one worker, so all of a key's messages meet there.

A copy keeps the original value and CloudEvents attributes, and names the original's position in
``rekey_source_partition``/``rekey_source_offset`` headers: :func:`deliver_copies` hands each copy over
as the message it copies (at that position, under the source topic's contract and dead-letter topic),
so that a copy forwarded twice (the forwarder crashed before committing its input) is recognised by
position like any redelivery.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiokafka.partitioner import murmur2

from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.validation import ContractViolation
from shared.messaging.dead_letter import dead_letter
from shared.messaging.delivery import Decoded, GroupHandler, RawEvent, deliver_group, header_pairs
from shared.messaging.envelope import OutgoingMessage
from shared.messaging.publisher import Publisher

SOURCE_PARTITION, SOURCE_OFFSET = "rekey_source_partition", "rekey_source_offset"


@functools.lru_cache(maxsize=65_536)
def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2 of the UTF-8 key: the Java client, aiokafka,
    kafka-python; librdkafka with ``partitioner=murmur2_random``) gives ``key`` among ``partitions``."""
    return (int(murmur2(key.encode())) & 0x7FFFFFFF) % partitions


def forwarded_copy(*, topic: str, key: str, partition: int, value: bytes, attrs: CloudEventAttributes,
                   source_partition: int, source_offset: int) -> OutgoingMessage:
    """The copy of one message for the internal ``topic``: its bytes and attributes, its position."""
    position = [(SOURCE_PARTITION, str(source_partition).encode()), (SOURCE_OFFSET, str(source_offset).encode())]
    return OutgoingMessage(topic=topic, value=value, key=key, headers=attrs.to_headers() + position,
                           partition=partition)


def at_source(event: RawEvent) -> RawEvent:
    """The message a copy stands for: same value and attributes, at the original's position."""
    pairs = header_pairs(event.headers)
    found = dict(pairs)
    try:
        partition, offset = int(found[SOURCE_PARTITION]), int(found[SOURCE_OFFSET])
    except (KeyError, ValueError) as exc:
        raise ContractViolation(f"not a forwarded copy: no valid {SOURCE_PARTITION}/{SOURCE_OFFSET} header") from exc
    kept = [(k, v) for k, v in pairs if k not in (SOURCE_PARTITION, SOURCE_OFFSET)]
    return RawEvent(event.value, event.key, kept, partition, offset)


async def deliver_copies(*, topic: str, source_topic: str, consumer: str, events: list[RawEvent],
                         handle: GroupHandler, publisher: Publisher,
                         decode: Callable[[str, bytes | None], Decoded]) -> int:
    """:func:`shared.messaging.delivery.deliver_group` for copies read off the internal ``topic``: each is
    validated, handled and, if it must be, dead-lettered as the ``source_topic`` message it copies."""
    originals = []
    for event in events:
        try:
            originals.append(at_source(event))
        except ContractViolation as exc:  # nothing of ours writes such a message: keep it for a person to see
            await publisher.publish(dead_letter(
                topic=source_topic, value=event.value, key=event.key, headers=header_pairs(event.headers),
                partition=event.partition, offset=event.offset, consumer=consumer,
                reason=f"{topic} partition {event.partition} offset {event.offset}: {exc}"))
    return await deliver_group(topic=source_topic, consumer=consumer, events=originals, handle=handle,
                               publisher=publisher, decode=decode) if originals else 0
