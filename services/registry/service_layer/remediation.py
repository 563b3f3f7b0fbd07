"""``bdguard registry remediate``: remediate a quarantined version by hand and get the candidate's
registry event back (the caller publishes it). The bus path is :mod:`services.remediation`."""

from __future__ import annotations

from pathlib import Path

from services.remediation.domain.fine_pruning import RemediationConfig
from services.remediation.service_layer.candidate import (
    REMEDIABLE,
    audit_proposal,
    build_candidate,
    choose_parent,
    fine_pruning,
)
from shared.contracts.records import ModelVersionPublished
from shared.db.unit_of_work import SqlUnitOfWork

__all__ = ["REMEDIABLE", "propose_remediated_version"]


def propose_remediated_version(model: str, version: str, clean_data: Path, uow: SqlUnitOfWork, *,
                               out_dir: Path, who: str, source_url: str, signing_key: Path | None = None,
                               rounds: int = 2, config: RemediationConfig | None = None) -> ModelVersionPublished:
    """Remediate ``model/version`` and return the registry event for the candidate (the caller publishes it)."""
    with uow:
        parent, name = choose_parent(model, version, uow, out_dir)
    candidate = build_candidate(parent, name, clean_data, remediator=fine_pruning(config, rounds=rounds),
                                out_dir=out_dir, who=who, source_url=source_url, signing_key=signing_key)
    with uow:
        audit_proposal(uow, candidate, who)
        uow.commit()
    return candidate.event
