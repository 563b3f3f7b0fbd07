"""The approved-model registry view: what was approved, by which checks, when; rejections with why."""

from __future__ import annotations

from typing import Any

from shared.db.unit_of_work import SqlUnitOfWork

DECISIONS = ("supply-chain.approved", "supply-chain.rejected", "scan.scanned-clean", "scan.quarantined",
             "scan.error", "registry.promoted", "registry.promotion-refused", "registry.legacy-import",
             "incident.quarantined", "rollback.completed", "rollback.no_safe_version")


def registry_view(uow: SqlUnitOfWork, model: str | None = None) -> list[dict[str, Any]]:
    """One row per model version, with every decision about it from the audit trail, oldest first."""
    with uow:
        versions = uow.ledger.list(model)
        production = {v.model: uow.ledger.production_version(v.model) for v in versions}
        decisions: dict[str, list[dict[str, Any]]] = {}
        for entry in uow.audit.iterate():
            if entry.action in DECISIONS:
                decisions.setdefault(entry.subject, []).append(
                    {"at": entry.recorded_at, "by": entry.actor, "decision": entry.action, **entry.details})
    rows = []
    for v in versions:
        sc = v.details.get("supply_chain", {})
        raw_scan = v.details.get("scan")
        scan: dict[str, Any] = raw_scan if isinstance(raw_scan, dict) else {}
        rows.append({"model": v.model, "version": v.version, "status": v.status.value,
                     "production": production[v.model] == v.version, "digest": v.artifact_digest,
                     "source_url": v.source_url, "submitted_at": v.created_at, "updated_at": v.updated_at,
                     "supply_chain_failed": sc.get("failed", []), "scan_confidence": scan.get("confidence"),
                     "scan_targets": scan.get("target_classes"), "decisions": decisions.get(v.key, [])})
    return rows
