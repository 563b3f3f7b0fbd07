"""Outgoing Kafka messages: value bytes, key, and CloudEvents headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.contracts.cloudevents import CloudEventAttributes, Headers
from shared.contracts.records import TOPIC_BY_RECORD, WireRecord
from shared.contracts.validation import encode_record


@dataclass(frozen=True)
class OutgoingMessage:
    """``partition`` None: the producer's partitioner picks it from the key."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Headers = field(default_factory=list)
    partition: int | None = None


def build_message(record: WireRecord, *, source: str, correlation_id: str | None = None,
                  event_id: str | None = None, key: str | None = None) -> OutgoingMessage:
    """Wrap a wire record for its topic; the key defaults to the model name (per-model ordering)."""
    topic = TOPIC_BY_RECORD[type(record)]
    attrs = CloudEventAttributes.for_topic(topic, source=source, subject=record.ce_subject(),
                                           correlation_id=correlation_id, event_id=event_id)
    data = record.asdict()
    return OutgoingMessage(topic=topic, value=encode_record(record), key=key or str(data.get("model") or ""),
                           headers=attrs.to_headers())
