from __future__ import annotations

from services.rollback.domain.plan import affected_predictions, bad_version_status, plan_rollback
from shared.ledger.model import ModelVersion, Status


def _mv(version: str, status: Status, created: float) -> ModelVersion:
    return ModelVersion("digits", version, f"file:///{version}.onnx", "sha256:" + "0" * 64, status=status,
                        created_at=created)


def test_production_goes_back_to_the_most_recent_version_with_a_clean_scan() -> None:
    versions = [_mv("1", Status.SCANNED_CLEAN, 1), _mv("2", Status.SCANNED_CLEAN, 2),
                _mv("3", Status.QUARANTINED, 3), _mv("4", Status.PRODUCTION, 4)]
    plan = plan_rollback(versions[3], versions, production="4")
    assert (plan.target_version, plan.bad_was_production) == ("2", True)
    assert bad_version_status(plan) is Status.ROLLED_BACK


def test_quarantined_rejected_and_unscanned_versions_are_never_rollback_targets() -> None:
    versions = [_mv("1", Status.REJECTED, 1), _mv("2", Status.QUARANTINED, 2), _mv("3", Status.VALIDATED, 3),
                _mv("4", Status.ROLLED_BACK, 4), _mv("5", Status.PRODUCTION, 5)]
    plan = plan_rollback(versions[4], versions, production="5")
    assert plan.target_version is None and not plan.has_safe_version
    assert "no other version" in plan.reason


def test_a_bad_version_that_is_not_serving_leaves_production_where_it_is() -> None:
    versions = [_mv("1", Status.PRODUCTION, 1), _mv("2", Status.SCANNED_CLEAN, 2)]
    plan = plan_rollback(versions[1], versions, production="1")
    assert (plan.target_version, plan.bad_was_production) == ("1", False)
    assert bad_version_status(plan) is Status.QUARANTINED


def test_affected_predictions_span_from_promotion_to_rollback() -> None:
    window = affected_predictions(served_since=100.0, first_signal_at=160.0, rolled_back_at=161.5,
                                  first_prediction_id="p-42")
    assert window["exposure_s"] == 61.5 and window["first_flagged_prediction_id"] == "p-42"
