"""Remediation service handlers on a real store: one outcome per request, the candidate via the outbox.

The remediator is a stand-in that writes bytes (Fine-Pruning itself is tested in tests/unit/remediation
and end to end in tests/e2e); everything around it — ledger checks, naming, signing, provenance,
outbox, audit, idempotency, dead letters — is the real code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.remediation.bootstrap import RemediationService
from services.remediation.config import RemediationSettings
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.records import RemediationRequested
from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import sha256_file
from shared.ledger.model import ModelVersion, Status
from shared.messaging.delivery import Delivery, deliver
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import RecordingPublisher
from shared.testing.artifacts import write_keypair

ROUND = {"clean_accuracy_before": 0.95, "clean_accuracy_after": 0.94, "asr_before": 0.91, "asr_after": 0.02,
         "meets_bar": True, "target": 7, "pruned": {"indices": [3, 5]}}


class FakeRemediator:
    """Writes a "remediated" model next to the rounds; records what it was asked to remediate."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[Path] = []
        self.error = error

    def __call__(self, model: Path, clean: Path, work: Path) -> tuple[Path, list[dict[str, Any]]]:
        self.calls.append(model)
        if self.error is not None:
            raise self.error
        work.mkdir(parents=True, exist_ok=True)
        out = work / "round1.onnx"
        out.write_bytes(b"pruned:" + model.read_bytes())
        return out, [ROUND]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "parent.onnx").write_bytes(b"backdoored onnx stand-in")
    (tmp_path / "clean.npz").write_bytes(b"clean data stand-in")
    return {"parent": tmp_path / "parent.onnx", "clean": tmp_path / "clean.npz", "out": tmp_path / "remediated"}


def _ledger(uow: SqlUnitOfWork, artifact: Path, status: Status = Status.QUARANTINED, version: str = "1") -> None:
    with uow:
        uow.ledger.add(ModelVersion("digits", version, artifact.as_uri(), sha256_file(artifact), status=status))
        uow.commit()


def _service(uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path], remediator: FakeRemediator,
             **settings: Any) -> tuple[RemediationService, RecordingPublisher]:
    publisher = RecordingPublisher()
    config = RemediationSettings(**{"default_clean_data": files["clean"], "out_dir": files["out"],
                                    "source_url": "https://registry.corp.example/models/digits", **settings})
    return RemediationService(config, uow_factory, OutboxRelay(uow_factory, publisher), remediator), publisher


def _delivery(request: RemediationRequested, event_id: str = "req-1") -> Delivery:
    attrs = CloudEventAttributes.for_topic(topics.REMEDIATION_REQUESTED, source="urn:test", event_id=event_id,
                                           subject=request.ce_subject())
    return Delivery(request, attrs, topics.REMEDIATION_REQUESTED, 0, 0)


def _request(version: str = "1", **kw: Any) -> RemediationRequested:
    return RemediationRequested(model="digits", version=version, requested_by="alice", **kw)


def _sent(publisher: RecordingPublisher, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in publisher.sent if m.topic == topic]


def _actions(uow: SqlUnitOfWork, subject: str = "digits/1") -> list[str]:
    with uow:
        return [e.action for e in uow.audit.iterate(subject=subject)]


async def test_a_quarantined_version_becomes_a_signed_candidate_on_the_registry_topic_with_its_outcome(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path], tmp_path: Path) -> None:
    _ledger(uow_factory(), files["parent"])
    private_key, _ = write_keypair(tmp_path, "remediation")
    remediator = FakeRemediator()
    service, publisher = _service(uow_factory, files, remediator, signing_key=private_key)
    await service.on_remediation_requested(_delivery(_request(incident_id="inc-9")))
    assert remediator.calls == [files["parent"]]
    [candidate] = _sent(publisher, topics.MODEL_VERSION_PUBLISHED)
    [done] = _sent(publisher, topics.REMEDIATION_COMPLETED)
    artifact = files["out"] / "digits" / "1-fp1" / "model.onnx"
    assert artifact.read_bytes() == b"pruned:backdoored onnx stand-in"
    assert (candidate["version"], candidate["artifact_digest"]) == ("1-fp1", sha256_file(artifact))
    assert candidate["source_url"] == "https://registry.corp.example/models/digits"
    assert candidate["signature_uri"] and Path(candidate["signature_uri"].removeprefix("file://")).is_file()
    assert candidate["provenance"]["model_provenance"]["parent"] == {
        "model": "digits", "version": "1", "digest": sha256_file(files["parent"])}
    assert (done["status"], done["candidate_version"], done["meets_bar"]) == ("proposed", "1-fp1", True)
    assert (done["request_id"], done["incident_id"], done["reason"]) == ("req-1", "inc-9", None)
    assert done["figures"] == {"rounds": 1, "target": 7, "all_to_all": False, "asr_before": 0.91, "asr_after": 0.02,
                               "accuracy_before": 0.95, "accuracy_after": 0.94, "accuracy_drop_total": 0.01}
    assert "remediation.proposed" in _actions(uow_factory())
    with uow_factory() as uow:
        assert uow.outbox.pending() == []  # relayed after the commit


async def test_a_redelivered_request_is_not_remediated_again(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path]) -> None:
    _ledger(uow_factory(), files["parent"])
    remediator = FakeRemediator()
    service, publisher = _service(uow_factory, files, remediator)
    await service.on_remediation_requested(_delivery(_request()))
    sent = len(publisher.sent)
    await service.on_remediation_requested(_delivery(_request()))
    assert len(remediator.calls) == 1 and len(publisher.sent) == sent
    assert _actions(uow_factory()).count("remediation.proposed") == 1


async def test_a_second_request_gets_a_new_candidate_name_before_the_first_reaches_the_ledger(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path]) -> None:
    _ledger(uow_factory(), files["parent"])
    service, publisher = _service(uow_factory, files, FakeRemediator())
    await service.on_remediation_requested(_delivery(_request(), "req-1"))
    await service.on_remediation_requested(_delivery(_request(), "req-2"))
    assert [c["version"] for c in _sent(publisher, topics.MODEL_VERSION_PUBLISHED)] == ["1-fp1", "1-fp2"]


@pytest.mark.parametrize(("case", "reason"), [
    ("unknown version", "not in the ledger"),
    ("scanned-clean version", "only quarantined or rolled-back"),
    ("no clean data", "no clean data"),
    ("missing clean data file", "clean data not found"),
    ("clean data file outside the allowed folders", "outside the allowed folders"),
    ("parent bytes swapped", "digest mismatch"),
])
async def test_a_request_that_cannot_be_acted_on_is_refused_with_the_reason(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path], case: str, reason: str) -> None:
    _ledger(uow_factory(), files["parent"], Status.SCANNED_CLEAN if case == "scanned-clean version" else
            Status.QUARANTINED)
    settings: dict[str, Any] = {"default_clean_data": None} if case == "no clean data" else {}
    named = files["clean"] if "outside" in case else files["out"] / "nope.npz"
    if case == "missing clean data file":
        settings["clean_data_dirs"] = [files["out"]]
    request = _request(version="9" if case == "unknown version" else "1",
                       clean_data_uri=named.as_uri() if "file" in case else None)
    if case == "parent bytes swapped":
        files["parent"].write_bytes(b"something else")
    remediator = FakeRemediator()
    service, publisher = _service(uow_factory, files, remediator, **settings)
    await service.on_remediation_requested(_delivery(request))
    [done] = _sent(publisher, topics.REMEDIATION_COMPLETED)
    assert done["status"] == "refused" and reason in done["reason"], done
    assert done["candidate_version"] is None and remediator.calls == []
    assert _sent(publisher, topics.MODEL_VERSION_PUBLISHED) == []
    assert "remediation.refused" in _actions(uow_factory(), f"digits/{request.version}")


async def test_a_remediation_that_breaks_is_reported_as_failed_not_retried(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path]) -> None:
    _ledger(uow_factory(), files["parent"], Status.ROLLED_BACK)
    remediator = FakeRemediator(error=RuntimeError("graph has no dense layer to prune"))
    service, publisher = _service(uow_factory, files, remediator)
    await service.on_remediation_requested(_delivery(_request()))
    await service.on_remediation_requested(_delivery(_request()))  # redelivery: the outcome stands
    [done] = _sent(publisher, topics.REMEDIATION_COMPLETED)
    assert done["status"] == "failed" and "no dense layer" in done["reason"]
    assert len(remediator.calls) == 1 and _sent(publisher, topics.MODEL_VERSION_PUBLISHED) == []


async def test_a_malformed_request_goes_to_the_dead_letter_topic_with_the_reason(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path]) -> None:
    remediator = FakeRemediator()
    service, publisher = _service(uow_factory, files, remediator)
    ok = await deliver(topic=topics.REMEDIATION_REQUESTED, consumer="remediate_model", value=b'{"model": "digits"}',
                       key=b"digits", headers=None, partition=0, offset=7, handle=service.on_remediation_requested,
                       publisher=publisher)
    [dead] = publisher.sent
    assert not ok and dead.topic == topics.dead_letter_topic(topics.REMEDIATION_REQUESTED)
    assert b"version" in dict(dead.headers)["dlq_reason"] and remediator.calls == []


def test_the_registry_cli_path_proposes_a_candidate_and_refuses_a_clean_version(
        uow_factory: Callable[[], SqlUnitOfWork], files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.registry.service_layer import remediation
    from shared.ledger.model import InvalidTransition

    monkeypatch.setattr(remediation, "fine_pruning", lambda config, rounds: FakeRemediator())
    _ledger(uow_factory(), files["parent"])
    _ledger(uow_factory(), files["parent"], Status.SCANNED_CLEAN, version="2")
    event = remediation.propose_remediated_version("digits", "1", files["clean"], uow_factory(), out_dir=files["out"],
                                                   who="bob", source_url="https://huggingface.co/acme/digits")
    assert event.version == "1-fp1" and event.submitter == "bdguard-remediation:bob"
    assert "remediation.proposed" in _actions(uow_factory())
    with pytest.raises(InvalidTransition, match="scanned-clean"):
        remediation.propose_remediated_version("digits", "2", files["clean"], uow_factory(), out_dir=files["out"],
                                               who="bob", source_url="https://huggingface.co/acme/digits")
