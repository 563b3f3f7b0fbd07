from __future__ import annotations

import dataclasses

from shared.audit.chain import GENESIS_HASH, AuditEntry, seal, verify_chain


def _chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(n):
        entries.append(seal(entries[-1] if entries else None, recorded_at=1000.0 + i, actor="scanner",
                            action="scan.completed", subject=f"m/{i}", details={"i": i, "score": 0.1 * i}))
    return entries


def test_a_fresh_chain_verifies_and_starts_from_the_genesis_hash() -> None:
    entries = _chain(5)
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert verify_chain(entries).ok


def test_an_altered_detail_is_pinpointed_to_its_record() -> None:
    entries = _chain(6)
    entries[3] = dataclasses.replace(entries[3], details={"i": 3, "score": 0.0})
    report = verify_chain(entries)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "altered" in report.reason


def test_a_resealed_record_still_breaks_the_next_link() -> None:
    entries = _chain(6)
    forged = dataclasses.replace(entries[2], actor="attacker")
    entries[2] = dataclasses.replace(forged, hash=forged.computed_hash())
    report = verify_chain(entries)
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_a_deleted_record_is_reported_as_a_gap() -> None:
    entries = _chain(5)
    del entries[2]
    report = verify_chain(entries)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "gap" in report.reason


def test_the_hash_does_not_depend_on_key_order_of_details() -> None:
    a = seal(None, recorded_at=1.0, actor="x", action="y", subject="z", details={"a": 1, "b": 2})
    b = seal(None, recorded_at=1.0, actor="x", action="y", subject="z", details={"b": 2, "a": 1})
    assert a.hash == b.hash
