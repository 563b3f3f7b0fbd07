"""The shared store on SQLite and PostgreSQL: ledger, production alias, audit trail, outbox."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from shared.audit.chain import verify_chain
from shared.db.engine import make_engine
from shared.db.tables import audit_records
from shared.db.unit_of_work import SqlUnitOfWork
from shared.ledger.model import ModelVersion, Status

UowFactory = Callable[[], SqlUnitOfWork]


def _mv(version: str) -> ModelVersion:
    return ModelVersion("digits", version, f"file:///m/{version}.onnx", "sha256:" + version * 64,
                        created_at=float(version), updated_at=float(version))


def test_the_ledger_stores_versions_and_their_status_changes(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        uow.ledger.add(_mv("1"))
        uow.commit()
    with uow_factory() as uow:
        mv = uow.ledger.get("digits", "1")
        assert mv is not None and mv.status is Status.SUBMITTED
        mv.move_to(Status.VALIDATED, at=5.0, checks=["source", "integrity"])
        uow.ledger.save(mv)
        uow.commit()
    with uow_factory() as uow:
        stored = uow.ledger.get("digits", "1")
        assert stored is not None
        assert (stored.status, stored.updated_at, stored.details) == (Status.VALIDATED, 5.0,
                                                                     {"checks": ["source", "integrity"]})


def test_leaving_a_unit_of_work_without_commit_rolls_back(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        uow.ledger.add(_mv("1"))
    with uow_factory() as uow:
        assert uow.ledger.get("digits", "1") is None


def test_the_production_alias_moves_between_versions(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        assert uow.ledger.production_version("digits") is None
        uow.ledger.set_production("digits", "1", at=1.0)
        uow.ledger.set_production("digits", "2", at=2.0)
        uow.commit()
    with uow_factory() as uow:
        assert uow.ledger.production_version("digits") == "2"


def test_a_tampered_audit_record_in_the_database_is_pinpointed(uow_factory: UowFactory, store_url: str) -> None:
    with uow_factory() as uow:
        for i in range(5):
            uow.audit.append(recorded_at=100.0 + i, actor="rollback", action="alias.moved", subject="digits/2",
                             details={"from": "2", "to": "1", "latency_ms": 12.5 + i})
        uow.commit()
    with uow_factory() as uow:
        assert verify_chain(uow.audit.iterate()).ok
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit_records).where(audit_records.c.seq == 3).values(actor="intruder"))
    engine.dispose()
    with uow_factory() as uow:
        report = verify_chain(uow.audit.iterate())
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_two_records_cannot_claim_the_same_place_in_the_chain(uow_factory: UowFactory) -> None:
    with uow_factory() as first, uow_factory() as second:
        first.audit.append(recorded_at=1.0, actor="a", action="x", subject="s", details={})
        first.commit()
        stale_head = None
        second.audit.head = lambda: stale_head  # type: ignore[method-assign]
        with pytest.raises(sa.exc.IntegrityError):
            second.audit.append(recorded_at=2.0, actor="b", action="y", subject="s", details={})
            second.commit()


def test_idempotency_keys_and_the_outbox_survive_a_new_session(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        uow.processed.mark("rollback", "evt-1", at=1.0)
        uow.outbox.add(topic="t", key="digits", value=b"{}", headers=[("ce_id", b"evt-2")], at=1.0)
        uow.commit()
    with uow_factory() as uow:
        assert uow.processed.seen("rollback", "evt-1") and not uow.processed.seen("rollback", "evt-2")
        pending = uow.outbox.pending()
        assert [(p["topic"], p["headers"]) for p in pending] == [("t", [["ce_id", "evt-2"]])]
        uow.outbox.mark_sent([pending[0]["id"]], at=2.0)
        uow.commit()
    with uow_factory() as uow:
        assert uow.outbox.pending() == []
