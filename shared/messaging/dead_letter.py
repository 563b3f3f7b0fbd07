"""Dead-letter path: the original bytes go to ``<topic>.dlq`` with the reason in headers."""

from __future__ import annotations

import time
from collections.abc import Iterable

from shared.messaging.envelope import OutgoingMessage
from shared.topics import dead_letter_topic


def dead_letter(*, topic: str, value: bytes | None, key: bytes | str | None,
                headers: Iterable[tuple[str, bytes | None]] | None, partition: int, offset: int,
                reason: str, consumer: str) -> OutgoingMessage:
    """Keep the original value and headers; add why, where from, and who gave up on it."""
    kept = [(k, v or b"") for k, v in (headers or []) if not k.startswith("dlq_")]
    extra = [
        ("dlq_reason", reason[:2000].encode()),
        ("dlq_source_topic", topic.encode()),
        ("dlq_source_partition", str(partition).encode()),
        ("dlq_source_offset", str(offset).encode()),
        ("dlq_consumer", consumer.encode()),
        ("dlq_failed_at", repr(time.time()).encode()),
    ]
    key_str = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return OutgoingMessage(topic=dead_letter_topic(topic), value=value or b"", key=key_str, headers=kept + extra)
