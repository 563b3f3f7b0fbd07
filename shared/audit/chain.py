"""Hash-chained, append-only audit trail (pure: stdlib only).

Each record's hash is SHA-256 over the canonical JSON of its content and the previous record's hash,
so changing, deleting or re-ordering any record breaks every later link. ``verify_chain`` names the
first record that does not verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class AuditEntry:
    """One audit record; ``hash`` seals everything else."""

    seq: int
    recorded_at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def content(self) -> dict[str, Any]:
        return {"seq": self.seq, "recorded_at": self.recorded_at, "actor": self.actor, "action": self.action,
                "subject": self.subject, "details": self.details, "prev_hash": self.prev_hash}

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {**self.content(), "hash": self.hash}


def seal(prev: AuditEntry | None, *, recorded_at: float, actor: str, action: str, subject: str,
         details: dict[str, Any]) -> AuditEntry:
    """Build the record that follows ``prev`` (None for the first record)."""
    unsealed = AuditEntry(seq=1 if prev is None else prev.seq + 1, recorded_at=recorded_at, actor=actor,
                          action=action, subject=subject, details=details,
                          prev_hash=GENESIS_HASH if prev is None else prev.hash)
    return AuditEntry(**{**unsealed.__dict__, "hash": unsealed.computed_hash()})


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Walk records in ``seq`` order; report the first broken one and why."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(False, count, entry.seq, f"expected seq {expected_seq}, found {entry.seq} (gap)")
        if entry.prev_hash != prev_hash:
            return ChainReport(False, count, entry.seq, "prev_hash does not match the previous record's hash")
        if entry.computed_hash() != entry.hash:
            return ChainReport(False, count, entry.seq, "content does not match its hash (record altered)")
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    return ChainReport(True, count)
