"""Transactional outbox: messages are stored with the state change, then relayed to Kafka.

Delivery is at least once (a crash between publish and ``mark_sent`` re-sends); every consumer is
idempotent on the CloudEvents id, so a re-send is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.contracts.records import AuditRecord
from shared.db.unit_of_work import SqlUnitOfWork
from shared.messaging.envelope import OutgoingMessage, build_message
from shared.messaging.publisher import Publisher


def stage(uow: SqlUnitOfWork, message: OutgoingMessage) -> None:
    uow.outbox.add(topic=message.topic, key=message.key, value=message.value, headers=message.headers,
                   at=uow.now())


def audit(uow: SqlUnitOfWork, *, actor: str, action: str, subject: str, details: dict[str, Any],
          correlation_id: str | None = None) -> None:
    """Append to the hash-chained audit trail and stage its mirror on the audit topic."""
    entry = uow.audit.append(recorded_at=uow.now(), actor=actor, action=action, subject=subject, details=details)
    record = AuditRecord(
        seq=entry.seq, recorded_at=entry.recorded_at, actor=entry.actor, action=entry.action,
        subject=entry.subject, details=entry.details, prev_hash=entry.prev_hash, hash=entry.hash)
    stage(uow, build_message(record, source=f"urn:bdguard:{actor}", correlation_id=correlation_id,
                             event_id=f"audit-{entry.hash[:32]}", key=subject))


class OutboxRelay:
    def __init__(self, uow_factory: Callable[[], SqlUnitOfWork], publisher: Publisher) -> None:
        self.uow_factory = uow_factory
        self.publisher = publisher

    async def flush(self, limit: int = 500) -> int:
        """Publish pending messages in id order; returns how many were sent."""
        with self.uow_factory() as uow:
            rows = uow.outbox.pending(limit)
            for row in rows:
                await self.publisher.publish(OutgoingMessage(
                    topic=row["topic"], key=row["key"], value=bytes(row["value"]),
                    headers=[(k, v.encode()) for k, v in row["headers"]]))
            uow.outbox.mark_sent([int(r["id"]) for r in rows], uow.now())
            uow.commit()
        return len(rows)


async def flush_once(uow_factory: Callable[[], SqlUnitOfWork], bootstrap_servers: str) -> int:
    """Publish a command-line tool's pending outbox rows with a short-lived producer."""
    from shared.messaging.publisher import KafkaPublisher

    publisher = KafkaPublisher(bootstrap_servers)
    await publisher.start()
    try:
        return await OutboxRelay(uow_factory, publisher).flush()
    finally:
        await publisher.stop()
