"""Unit of work over the shared store: one transaction, the repositories bound to it."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from shared.db.repositories import (
    AuditRepository,
    LedgerRepository,
    OutboxRepository,
    ProcessedEventRepository,
)


class SqlUnitOfWork:
    """``with uow: ...; uow.commit()`` — leaving the block without commit rolls back."""

    ledger: LedgerRepository
    audit: AuditRepository
    outbox: OutboxRepository
    processed: ProcessedEventRepository

    def __init__(self, session_factory: sessionmaker[Session], clock: Any = time.time,
                 producer: str = "bdguard") -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.producer = producer

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self.session_factory()
        self.ledger = LedgerRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.outbox = OutboxRepository(self.session, self.producer)
        self.processed = ProcessedEventRepository(self.session)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    def now(self) -> float:
        return float(self.clock())


UnitOfWork = TypeVar("UnitOfWork", bound=SqlUnitOfWork)


def uow_factory_for(database_url: str, producer: str, cls: Callable[..., UnitOfWork]) -> Callable[[], UnitOfWork]:
    """A fresh unit of work per call over one engine; ``producer`` tags the outbox rows it stages."""
    from shared.db.engine import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(database_url))
    return lambda: cls(sessions, producer=producer)
