"""Scanner service handlers on a real store: only supply-chain-validated bytes are scanned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from services.scanner.bootstrap import ScannerService
from services.scanner.config import ScannerSettings
from services.scanner.service_layer.handlers import NotValidated, ScanOutcome, admit, record_scan
from shared import topics
from shared.contracts.records import ScanRequested
from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import sha256_file
from shared.ledger.model import ModelVersion, Status
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import RecordingPublisher


def _request(artifact: Path, version: str = "1") -> ScanRequested:
    return ScanRequested(model="digits", version=version, artifact_uri=artifact.as_uri(),
                         artifact_digest=sha256_file(artifact), requested_by="supply-chain")


def _ledger(uow: SqlUnitOfWork, artifact: Path, status: Status, version: str = "1") -> None:
    with uow:
        uow.ledger.add(ModelVersion("digits", version, artifact.as_uri(), sha256_file(artifact), status=status))
        uow.commit()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes stand-in: the handlers never parse them")
    return path


def test_a_request_for_a_version_supply_chain_did_not_validate_is_refused(
        uow_factory: Callable[[], SqlUnitOfWork], artifact: Path) -> None:
    _ledger(uow_factory(), artifact, Status.REJECTED)
    with pytest.raises(NotValidated, match="rejected"):
        admit(_request(artifact), "evt-1", uow_factory())
    with pytest.raises(NotValidated, match="unknown"):
        admit(_request(artifact, version="9"), "evt-2", uow_factory())


@pytest.mark.parametrize(("detected", "status"), [(True, Status.QUARANTINED), (False, Status.SCANNED_CLEAN)])
def test_a_scan_moves_the_ledger_and_a_detection_raises_an_alert(
        uow_factory: Callable[[], SqlUnitOfWork], artifact: Path, detected: bool, status: Status) -> None:
    _ledger(uow_factory(), artifact, Status.VALIDATED)
    assert admit(_request(artifact), "evt-1", uow_factory())
    outcome = ScanOutcome(detected, 0.95 if detected else 0.05, [7] if detected else [],
                          [{"key": "neural_cleanse.v1", "score": 3.1, "verdict": "suspicious"}], 12.0,
                          notes=["only 8 clean inputs per class"])
    assert record_scan(_request(artifact), outcome, "evt-1", uow_factory()) is status
    assert not admit(_request(artifact), "evt-1", uow_factory())  # redelivery: nothing to do
    with uow_factory() as uow:
        staged = {r["topic"]: orjson.loads(r["value"]) for r in uow.outbox.pending()}
        decision = next(e for e in uow.audit.iterate() if e.action.startswith("scan."))
    assert decision.details["notes"] == ["only 8 clean inputs per class"]  # the caveat is on the audit trail
    assert staged[topics.SCAN_COMPLETED]["verdict"] == status.value
    assert (topics.ALERTS in staged) is detected


async def test_bytes_swapped_after_validation_are_quarantined_without_being_scanned(
        uow_factory: Callable[[], SqlUnitOfWork], artifact: Path) -> None:
    _ledger(uow_factory(), artifact, Status.VALIDATED)
    request = _request(artifact)
    artifact.write_bytes(b"something else entirely")
    scanned: list[Path] = []

    def scanner(model: Path, clean: Path, base: Path, baseline: Path | None) -> ScanOutcome:
        scanned.append(model)
        return ScanOutcome(False, 0.0, [], [], 0.0)

    service = ScannerService(ScannerSettings(default_clean_data=artifact), uow_factory,
                             OutboxRelay(uow_factory, RecordingPublisher()), scanner)
    from shared.contracts.cloudevents import CloudEventAttributes
    from shared.messaging.delivery import Delivery

    attrs = CloudEventAttributes.for_topic(topics.SCAN_REQUESTED, source="t", subject="digits/1")
    await service.on_scan_requested(Delivery(request, attrs, topics.SCAN_REQUESTED, 0, 0))
    assert scanned == []
    with uow_factory() as uow:
        mv = uow.ledger.get("digits", "1")
    assert mv is not None and mv.status is Status.QUARANTINED
    assert "digest mismatch" in mv.details["scan"]["error"]


async def test_the_latest_clean_versions_report_is_the_neural_cleanse_baseline(
        uow_factory: Callable[[], SqlUnitOfWork], artifact: Path, tmp_path: Path) -> None:
    old_report = tmp_path / "v1-scan.json"
    old_report.write_text("{}")
    with uow_factory() as uow:
        uow.ledger.add(ModelVersion("digits", "1", artifact.as_uri(), sha256_file(artifact), status=Status.PRODUCTION,
                                    created_at=1.0, details={"scan": {"report_uri": old_report.as_uri()}}))
        uow.ledger.add(ModelVersion("digits", "0", artifact.as_uri(), sha256_file(artifact), status=Status.QUARANTINED,
                                    created_at=2.0, details={"scan": {"report_uri": old_report.as_uri()}}))
        uow.commit()
    _ledger(uow_factory(), artifact, Status.VALIDATED, version="2")
    seen: list[Path | None] = []

    def scanner(model: Path, clean: Path, base: Path, baseline: Path | None) -> ScanOutcome:
        seen.append(baseline)
        return ScanOutcome(False, 0.1, [], [], 1.0)

    service = ScannerService(ScannerSettings(default_clean_data=artifact), uow_factory,
                             OutboxRelay(uow_factory, RecordingPublisher()), scanner)
    from shared.contracts.cloudevents import CloudEventAttributes
    from shared.messaging.delivery import Delivery

    attrs = CloudEventAttributes.for_topic(topics.SCAN_REQUESTED, source="t", subject="digits/2")
    await service.on_scan_requested(Delivery(_request(artifact, "2"), attrs, topics.SCAN_REQUESTED, 0, 1))
    assert seen == [old_report]  # the production version's report, never the quarantined one's
