"""CloudEvents 1.0 over Kafka, *binary* content mode.

Attributes travel as ``ce_<name>`` headers and the message value is the plain JSON data, so a plain
consumer reads clean JSON and a CloudEvents-aware one reads the headers. Chosen over structured mode
so that every topic's value validates directly against ``schemas/<topic>.schema.json``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.topics import cloudevent_type

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED = ("id", "source", "type", "specversion", "time", "subject", "correlationid")

Headers = list[tuple[str, bytes]]


class MissingCloudEventAttribute(ValueError):
    """A message lacks a required ``ce_*`` header."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CloudEventAttributes:
    """The attributes every Backdoor Guard message carries."""

    source: str
    type: str
    subject: str
    correlationid: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=_now_iso)
    specversion: str = SPEC_VERSION

    @classmethod
    def for_topic(cls, topic: str, *, source: str, subject: str,
                  correlation_id: str | None = None, event_id: str | None = None) -> CloudEventAttributes:
        event_id = event_id or uuid.uuid4().hex
        return cls(source=source, type=cloudevent_type(topic), subject=subject,
                   correlationid=correlation_id or event_id, id=event_id)

    def to_headers(self) -> Headers:
        pairs = [(f"ce_{name}", str(getattr(self, name)).encode()) for name in REQUIRED]
        return [*pairs, ("content-type", CONTENT_TYPE.encode())]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes | None]] | None) -> CloudEventAttributes:
        found = {k[3:]: (v or b"").decode("utf-8", "replace") for k, v in (headers or []) if k.startswith("ce_")}
        missing = [name for name in REQUIRED if not found.get(name)]
        if missing:
            raise MissingCloudEventAttribute(f"missing CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
        return cls(**{name: found[name] for name in REQUIRED})
