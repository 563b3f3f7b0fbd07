"""Choosing where production goes when a version must be pulled (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.ledger.model import DEPLOYABLE, ModelVersion, Status


@dataclass(frozen=True)
class RollbackPlan:
    model: str
    bad_version: str
    target_version: str | None
    bad_was_production: bool
    reason: str

    @property
    def has_safe_version(self) -> bool:
        return self.target_version is not None


def plan_rollback(bad: ModelVersion, versions: list[ModelVersion], production: str | None) -> RollbackPlan:
    """Most recent other version whose scan verdict is clean and that no open backdoor incident names (a
    canary's alerts); only when every clean version has one, the most recent of them, said so in the reason;
    none → no safe version.

    When the bad version is not the one serving, production stays where it is (nothing to roll back)
    and only the bad version is quarantined.
    """
    bad_was_production = production == bad.version
    if production is not None and not bad_was_production:
        return RollbackPlan(bad.model, bad.version, production, False, "bad version was not serving")
    candidates = [v for v in versions if v.version != bad.version and v.status in DEPLOYABLE]
    if not candidates:
        return RollbackPlan(bad.model, bad.version, None, bad_was_production,
                            "no other version of this model has a clean scan verdict")
    unsuspected = [v for v in candidates if v.open_incident is None]
    best = max(unsuspected or candidates, key=lambda v: (v.created_at, v.version))
    if best.open_incident is not None:  # every clean version is under an open incident: the latest, said so
        return RollbackPlan(bad.model, bad.version, best.version, bad_was_production,
                            f"latest version with status {best.status.value}, although under open incident "
                            f"{best.open_incident} (no clean version without one)")
    skipped = sorted(v.version for v in candidates if v.open_incident is not None)
    return RollbackPlan(bad.model, bad.version, best.version, bad_was_production,
                        f"latest version with status {best.status.value}"
                        + (f" not under an open incident (skipped {', '.join(skipped)})" if skipped else ""))


def bad_version_status(plan: RollbackPlan) -> Status:
    return Status.ROLLED_BACK if plan.bad_was_production else Status.QUARANTINED


def affected_predictions(*, served_since: float | None, first_signal_at: float | None, rolled_back_at: float,
                         first_prediction_id: str | None) -> dict[str, Any]:
    """The window of predictions the bad version served that responders must review."""
    return {
        "served_since": served_since,
        "first_signal_at": first_signal_at,
        "until": rolled_back_at,
        "first_flagged_prediction_id": first_prediction_id,
        "exposure_s": None if served_since is None else round(rolled_back_at - served_since, 3),
    }
