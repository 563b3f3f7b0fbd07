"""Turn one raw Kafka event into a validated record for a handler, or a dead letter with the reason."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.contracts.cloudevents import REQUIRED, CloudEventAttributes
from shared.contracts.records import WireRecord
from shared.contracts.validation import ContractViolation, decode_record
from shared.logging import bind_message_context, get_logger
from shared.messaging.dead_letter import dead_letter
from shared.messaging.publisher import Publisher
from shared.topics import cloudevent_type

log = get_logger(__name__)


class Decoded(Protocol):
    """What a topic's decoder returns: a wire record, or a lighter object for hot topics."""

    def ce_subject(self) -> str: ...


@dataclass(frozen=True)
class Delivery:
    """A validated message as handlers see it."""

    record: Decoded | WireRecord
    attrs: CloudEventAttributes
    topic: str
    partition: int
    offset: int


Handler = Callable[[Delivery], Awaitable[None]]
GroupHandler = Callable[[list[Delivery]], Awaitable[None]]


@dataclass(frozen=True)
class RawEvent:
    """One consumed Kafka message, as it came off the wire."""

    value: bytes | None
    key: Any
    headers: Any
    partition: int
    offset: int


def header_pairs(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v or b"") for k, v in items]


def attributes_for(topic: str, partition: int, offset: int, headers: list[tuple[str, bytes]],
                   subject: str) -> CloudEventAttributes:
    """Read ``ce_*`` headers; a producer that sent none gets attributes derived from the message position
    (stable across redeliveries, so idempotency still holds). A wrong ``ce_type`` is a contract violation."""
    found = {k[3:]: v.decode("utf-8", "replace") for k, v in headers if k.startswith("ce_")}
    expected_type = cloudevent_type(topic)
    if found.get("type") and found["type"] != expected_type:
        raise ContractViolation(f"ce_type {found['type']!r} does not belong on {topic} (expected {expected_type})")
    derived_id = f"{topic}/{partition}/{offset}"
    defaults = {"id": derived_id, "source": "urn:bdguard:unknown-producer", "type": expected_type,
                "specversion": "1.0", "time": repr(time.time()), "subject": subject,
                "correlationid": found.get("id") or derived_id}
    return CloudEventAttributes(**{name: found.get(name) or defaults[name] for name in REQUIRED})


async def deliver(*, topic: str, consumer: str, value: bytes | None, key: Any, headers: Any, partition: int,
                  offset: int, handle: Handler, publisher: Publisher,
                  decode: Callable[[str, bytes | None], Decoded] = decode_record) -> bool:
    """Validate and hand one message to ``handle``; returns False when it went to the dead-letter topic.

    A handler exception also dead-letters the message (with the error as reason) so that one hostile
    input never stops the agent; the partition keeps moving.
    """
    event = RawEvent(value, key, headers, partition, offset)
    delivery = await _validated(topic, consumer, event, publisher, decode)
    return delivery is not None and await _handle_one(topic, consumer, event, delivery, handle, publisher)


async def deliver_group(*, topic: str, consumer: str, events: list[RawEvent], handle: GroupHandler,
                        publisher: Publisher, decode: Callable[[str, bytes | None], Decoded] = decode_record) -> int:
    """:func:`deliver` for many messages at once: each is validated (bad ones are dead-lettered with the
    reason), the valid ones go to ``handle`` in one call. If that call fails, each message is handed over
    alone, so one hostile message is dead-lettered and the rest still count. Returns how many were handled.
    """
    valid = [(event, delivery) for event in events
             if (delivery := await _validated(topic, consumer, event, publisher, decode)) is not None]
    if not valid:
        return 0
    last = valid[-1][1].attrs
    bind_message_context(correlation_id=last.correlationid, event_id=last.id, topic=topic, consumer=consumer)
    try:
        await handle([delivery for _, delivery in valid])
        return len(valid)
    except Exception as exc:
        log.warning("group handler failed; handling the messages one by one", error=str(exc), size=len(valid))

    async def alone(delivery: Delivery) -> None:
        await handle([delivery])

    return sum([await _handle_one(topic, consumer, event, delivery, alone, publisher) for event, delivery in valid])


async def _validated(topic: str, consumer: str, event: RawEvent, publisher: Publisher,
                     decode: Callable[[str, bytes | None], Decoded]) -> Delivery | None:
    """The delivery a handler sees, or None when the message broke the contract (then dead-lettered)."""
    pairs = header_pairs(event.headers)
    try:
        record = decode(topic, event.value)
        attrs = attributes_for(topic, event.partition, event.offset, pairs, record.ce_subject())
    except ContractViolation as exc:
        await _dead_letter(topic, consumer, event, str(exc), publisher)
        return None
    return Delivery(record, attrs, topic, event.partition, event.offset)


async def _handle_one(topic: str, consumer: str, event: RawEvent, delivery: Delivery, handle: Handler,
                      publisher: Publisher) -> bool:
    attrs = delivery.attrs
    bind_message_context(correlation_id=attrs.correlationid, event_id=attrs.id, subject=attrs.subject,
                         topic=topic, consumer=consumer)
    try:
        await handle(delivery)
    except Exception as exc:
        log.exception("handler failed", error=str(exc))
        await _dead_letter(topic, consumer, event, f"handler failed: {type(exc).__name__}: {exc}", publisher)
        return False
    return True


async def _dead_letter(topic: str, consumer: str, event: RawEvent, reason: str, publisher: Publisher) -> None:
    log.warning("message dead-lettered", topic=topic, partition=event.partition, offset=event.offset, reason=reason)
    await publisher.publish(dead_letter(topic=topic, value=event.value, key=event.key,
                                        headers=header_pairs(event.headers), partition=event.partition,
                                        offset=event.offset, reason=reason, consumer=consumer))
