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
    pairs = header_pairs(headers)
    try:
        record = decode(topic, value)
        attrs = attributes_for(topic, partition, offset, pairs, record.ce_subject())
    except ContractViolation as exc:
        return await _dead_letter(topic, consumer, value, key, pairs, partition, offset, str(exc), publisher)
    bind_message_context(correlation_id=attrs.correlationid, event_id=attrs.id, subject=attrs.subject,
                         topic=topic, consumer=consumer)
    try:
        await handle(Delivery(record, attrs, topic, partition, offset))
    except Exception as exc:
        log.exception("handler failed", error=str(exc))
        reason = f"handler failed: {type(exc).__name__}: {exc}"
        return await _dead_letter(topic, consumer, value, key, pairs, partition, offset, reason, publisher)
    return True


async def _dead_letter(topic: str, consumer: str, value: bytes | None, key: Any,
                       headers: list[tuple[str, bytes]], partition: int, offset: int, reason: str,
                       publisher: Publisher) -> bool:
    log.warning("message dead-lettered", topic=topic, partition=partition, offset=offset, reason=reason)
    await publisher.publish(dead_letter(topic=topic, value=value, key=key, headers=headers, partition=partition,
                                        offset=offset, reason=reason, consumer=consumer))
    return False
