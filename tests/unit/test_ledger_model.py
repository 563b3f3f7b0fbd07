from __future__ import annotations

import pytest

from shared.ledger.model import InvalidTransition, ModelVersion, Status


def _mv(status: Status = Status.SUBMITTED) -> ModelVersion:
    return ModelVersion("digits", "1", "file:///m.onnx", "sha256:" + "0" * 64, status=status)


def test_a_version_walks_the_happy_path_to_production() -> None:
    mv = _mv()
    for target in (Status.VALIDATED, Status.SCANNED_CLEAN, Status.PRODUCTION):
        assert mv.move_to(target, at=1.0)
    assert mv.status is Status.PRODUCTION


def test_moving_to_the_current_status_is_an_idempotent_no_op() -> None:
    mv = _mv(Status.QUARANTINED)
    assert mv.move_to(Status.QUARANTINED, at=2.0) is False


@pytest.mark.parametrize("start", [Status.QUARANTINED, Status.REJECTED, Status.SUBMITTED, Status.ROLLED_BACK])
def test_a_version_that_was_not_scanned_clean_can_never_reach_production(start: Status) -> None:
    with pytest.raises(InvalidTransition, match="production"):
        _mv(start).move_to(Status.PRODUCTION, at=1.0)
