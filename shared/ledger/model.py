"""The model version ledger every service shares (pure: stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    SUBMITTED = "submitted"
    VALIDATED = "validated"
    REJECTED = "rejected"
    SCANNED_CLEAN = "scanned-clean"
    QUARANTINED = "quarantined"
    PRODUCTION = "production"
    ROLLED_BACK = "rolled-back"


ALLOWED: dict[Status, frozenset[Status]] = {
    Status.SUBMITTED: frozenset({Status.VALIDATED, Status.REJECTED}),
    Status.VALIDATED: frozenset({Status.SCANNED_CLEAN, Status.QUARANTINED}),
    Status.SCANNED_CLEAN: frozenset({Status.PRODUCTION, Status.QUARANTINED}),
    Status.PRODUCTION: frozenset({Status.SCANNED_CLEAN, Status.ROLLED_BACK, Status.QUARANTINED}),
    Status.ROLLED_BACK: frozenset({Status.QUARANTINED}),
    Status.QUARANTINED: frozenset(),
    Status.REJECTED: frozenset(),
}

OPEN_INCIDENT = "open_incident"  # ModelVersion.details key: an open backdoor incident's id
# a version may serve production only from these states
DEPLOYABLE = frozenset({Status.SCANNED_CLEAN, Status.PRODUCTION})


class InvalidTransition(ValueError):
    """A status change the ledger does not allow (e.g. a quarantined version to production)."""


@dataclass
class ModelVersion:
    model: str
    version: str
    artifact_uri: str
    artifact_digest: str
    status: Status = Status.SUBMITTED
    source_url: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.version}"

    @property
    def open_incident(self) -> str | None:
        """The id of an open backdoor incident on this version (set and cleared by the incident service),
        which makes it no rollback target while another clean version exists, and no promotion target unless
        forced with a reason."""
        value = self.details.get(OPEN_INCIDENT)
        return None if value is None else str(value)

    def can_move_to(self, target: Status) -> bool:
        return target == self.status or target in ALLOWED[self.status]

    def move_to(self, target: Status, at: float, **details: Any) -> bool:
        """Change status; returns False when already there (idempotent), raises when not allowed."""
        if target == self.status:
            return False
        if target not in ALLOWED[self.status]:
            raise InvalidTransition(f"{self.key}: {self.status} -> {target} is not allowed")
        self.status, self.updated_at = target, at
        self.details.update(details)
        return True
