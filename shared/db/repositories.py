"""Repositories over the shared tables; they translate rows to and from pure domain objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.audit.chain import AuditEntry, seal
from shared.db.tables import audit_records, model_versions, outbox, processed_events, production_aliases
from shared.ledger.model import ModelVersion, Status


class LedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, model: str, version: str) -> ModelVersion | None:
        row = self.session.execute(
            sa.select(model_versions).where(model_versions.c.model == model, model_versions.c.version == version)
        ).mappings().first()
        return None if row is None else _to_model_version(row)

    def add(self, mv: ModelVersion) -> None:
        self.session.execute(sa.insert(model_versions).values(**_from_model_version(mv)))

    def save(self, mv: ModelVersion) -> None:
        self.session.execute(
            sa.update(model_versions)
            .where(model_versions.c.model == mv.model, model_versions.c.version == mv.version)
            .values(status=mv.status.value, updated_at=mv.updated_at, details=dict(mv.details))
        )

    def list(self, model: str | None = None) -> list[ModelVersion]:
        query = sa.select(model_versions).order_by(model_versions.c.model, model_versions.c.created_at)
        if model is not None:
            query = query.where(model_versions.c.model == model)
        return [_to_model_version(r) for r in self.session.execute(query).mappings()]

    def production_version(self, model: str) -> str | None:
        return self.session.execute(
            sa.select(production_aliases.c.version).where(production_aliases.c.model == model)
        ).scalar_one_or_none()

    def set_production(self, model: str, version: str, at: float) -> None:
        updated = self.session.execute(
            sa.update(production_aliases).where(production_aliases.c.model == model)
            .values(version=version, updated_at=at)
        )
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            self.session.execute(sa.insert(production_aliases).values(model=model, version=version, updated_at=at))


def _to_model_version(row: Any) -> ModelVersion:
    return ModelVersion(model=row["model"], version=row["version"], artifact_uri=row["artifact_uri"],
                        artifact_digest=row["artifact_digest"], status=Status(row["status"]),
                        source_url=row["source_url"], created_at=row["created_at"], updated_at=row["updated_at"],
                        details=dict(row["details"] or {}))


def _from_model_version(mv: ModelVersion) -> dict[str, Any]:
    return {"model": mv.model, "version": mv.version, "artifact_uri": mv.artifact_uri,
            "artifact_digest": mv.artifact_digest, "source_url": mv.source_url, "status": mv.status.value,
            "created_at": mv.created_at, "updated_at": mv.updated_at, "details": dict(mv.details)}


class AuditRepository:
    """Append-only: the only write is :meth:`append`, which seals the record onto the chain head."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def head(self) -> AuditEntry | None:
        row = self.session.execute(
            sa.select(audit_records).order_by(audit_records.c.seq.desc()).limit(1)
        ).mappings().first()
        return None if row is None else _to_entry(row)

    def append(self, *, recorded_at: float, actor: str, action: str, subject: str,
               details: dict[str, Any]) -> AuditEntry:
        entry = seal(self.head(), recorded_at=recorded_at, actor=actor, action=action, subject=subject,
                     details=details)
        self.session.execute(sa.insert(audit_records).values(**entry.as_dict()))
        return entry

    def iterate(self, subject: str | None = None, batch: int = 1000) -> Iterator[AuditEntry]:
        query = sa.select(audit_records).order_by(audit_records.c.seq)
        if subject is not None:
            query = query.where(audit_records.c.subject == subject)
        for row in self.session.execute(query.execution_options(yield_per=batch)).mappings():
            yield _to_entry(row)


def _to_entry(row: Any) -> AuditEntry:
    return AuditEntry(seq=int(row["seq"]), recorded_at=row["recorded_at"], actor=row["actor"],
                      action=row["action"], subject=row["subject"], details=dict(row["details"] or {}),
                      prev_hash=row["prev_hash"], hash=row["hash"])


class ProcessedEventRepository:
    """Idempotency keys: (consumer, event id) seen before means the message is a redelivery."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def seen(self, consumer: str, event_id: str) -> bool:
        return self.session.execute(
            sa.select(processed_events.c.event_id).where(
                processed_events.c.consumer == consumer, processed_events.c.event_id == event_id)
        ).first() is not None

    def mark(self, consumer: str, event_id: str, at: float) -> None:
        self.session.execute(sa.insert(processed_events).values(consumer=consumer, event_id=event_id,
                                                                processed_at=at))


class OutboxRepository:
    """Messages written in the same transaction as the state change they announce."""

    def __init__(self, session: Session, producer: str = "bdguard") -> None:
        self.session = session
        self.producer = producer

    def add(self, *, topic: str, key: str | None, value: bytes, headers: list[tuple[str, bytes]],
            at: float) -> None:
        self.session.execute(sa.insert(outbox).values(
            topic=topic, producer=self.producer, key=key, value=value,
            headers=[[k, v.decode()] for k, v in headers], created_at=at))

    def pending(self, limit: int = 500) -> list[dict[str, Any]]:
        """This producer's unsent rows; on PostgreSQL, rows another replica is relaying are skipped."""
        rows = self.session.execute(
            sa.select(outbox).where(outbox.c.sent_at.is_(None), outbox.c.producer == self.producer)
            .order_by(outbox.c.id).limit(limit).with_for_update(skip_locked=True)
        ).mappings()
        return [dict(r) for r in rows]

    def mark_sent(self, ids: list[int], at: float) -> None:
        if ids:
            self.session.execute(sa.update(outbox).where(outbox.c.id.in_(ids)).values(sent_at=at))
