"""Services as separate processes on a real broker: supply chain, scanning, incident response, rollback,
remediation."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.demo.models import DemoModels, train_models
from services.incident.adapters.repository import IncidentUnitOfWork
from shared import topics
from shared.contracts.records import Alert, ModelVersionPublished
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.ledger.model import ModelVersion, Status
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.messaging.envelope import build_message
from shared.testing.artifacts import provenance_document, sign_model, write_keypair
from shared.testing.kafka import collect, eventually, produce
from shared.testing.processes import ServiceProcess


@dataclass
class Stack:
    bootstrap: str
    uow: Callable[[], IncidentUnitOfWork]
    workdir: Path
    private_key: Path
    processes: list[ServiceProcess]
    models: DemoModels


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    db_url = f"sqlite:///{workdir / 'bdguard.db'}"
    upgrade(db_url)
    asyncio.run(ensure_topics(kafka_bootstrap, catalogue_partitions()))
    private_key, public_key = write_keypair(workdir, "registry")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BDGUARD_DATABASE_URL": db_url, "BDGUARD_LOG_JSON": "true",
           "BDGUARD_SUPPLY_CHAIN_PUBLIC_KEYS": orjson.dumps([str(public_key)]).decode()}
    models = train_models(workdir / "models")
    env["BDGUARD_SCANNER_DEFAULT_CLEAN_DATA"] = str(models.clean_data)
    env["BDGUARD_SCANNER_REPORTS_DIR"] = str(workdir / "reports")
    env |= {"BDGUARD_REMEDIATION_DEFAULT_CLEAN_DATA": str(models.clean_data),
            "BDGUARD_REMEDIATION_OUT_DIR": str(workdir / "fixed"),
            "BDGUARD_REMEDIATION_SOURCE_URL": "https://huggingface.co/acme/digits",
            "BDGUARD_REMEDIATION_SIGNING_KEY": str(private_key)}
    processes = [ServiceProcess(name, env, workdir / "logs").start()
                 for name in ("supply_chain", "scanner", "incident", "rollback", "remediation")]
    sessions = make_session_factory(make_engine(db_url))
    yield Stack(kafka_bootstrap, lambda: IncidentUnitOfWork(sessions), workdir, private_key, processes, models)
    for p in processes:
        p.stop()


def _seed(stack: Stack, model: str, statuses: dict[str, Status], production: str) -> None:
    with stack.uow() as uow:
        for i, (version, status) in enumerate(statuses.items()):
            uow.ledger.add(ModelVersion(model, version, f"file:///{model}/{version}.onnx", "sha256:" + "0" * 64,
                                        status=status, created_at=float(i), updated_at=float(i),
                                        details={"promoted_at": time.time()} if version == production else {}))
        uow.ledger.set_production(model, production, time.time())
        uow.commit()


def _alert(model: str, version: str) -> Alert:
    return Alert(alert_id=f"a-{uuid.uuid4().hex[:8]}", model=model, version=version,
                 kind="targeted_misclassification", severity_hint="critical", source="telemetry",
                 detected_at=time.time(), evidence={"target_share": 0.41, "baseline_share": 0.1}, target_class=7,
                 first_prediction_id="p-1001")


def _is(model: str) -> Callable[..., bool]:
    return lambda r: r.key == model.encode()


def _assert_alive(stack: Stack) -> None:
    for p in stack.processes:
        assert p.alive(), f"{p.name} died:\n{p.tail()}"


async def test_a_backdoor_alert_in_production_rolls_back_to_the_last_clean_version(stack: Stack) -> None:
    model = f"digits-{uuid.uuid4().hex[:6]}"
    _seed(stack, model, {"1": Status.SCANNED_CLEAN, "2": Status.PRODUCTION}, production="2")
    await produce(stack.bootstrap, [build_message(_alert(model, "2"), source="urn:test:telemetry")])
    done = await collect(stack.bootstrap, [topics.ROLLBACK_COMPLETED], keep=_is(model),
                         until=lambda got: len(got) >= 1, wait_s=90)
    _assert_alive(stack)
    assert len(done) == 1, "no rollback.completed within 90 s"
    body = orjson.loads(done[0].value)
    assert (body["status"], body["from_version"], body["to_version"]) == ("completed", "2", "1")
    assert body["affected"]["first_flagged_prediction_id"] == "p-1001"
    with stack.uow() as uow:
        assert uow.ledger.production_version(model) == "1"
        assert uow.ledger.get(model, "2").status is Status.ROLLED_BACK  # type: ignore[union-attr]

    # replay the escalation twice (at-least-once delivery, a confused operator): still one rollback
    [escalation] = await collect(stack.bootstrap, [topics.INCIDENT_ESCALATED], keep=_is(model),
                                 until=lambda got: len(got) >= 1)
    replay = (topics.INCIDENT_ESCALATED, escalation.value, model)
    await produce(stack.bootstrap, [replay, replay])
    # a sentinel on the same key (same partition, so processed after the replays): v1 is now the last version
    await produce(stack.bootstrap, [build_message(_alert(model, "1"), source="urn:test:telemetry")])
    after = await collect(stack.bootstrap, [topics.ROLLBACK_COMPLETED], keep=_is(model),
                          until=lambda got: len(got) >= 2, wait_s=90)
    incidents = [orjson.loads(r.value)["incident_id"] for r in after]
    assert incidents.count(body["incident_id"]) == 1
    assert orjson.loads(after[-1].value)["status"] == "no_safe_version"


async def test_no_safe_version_raises_a_critical_escalation_and_diverts_traffic(stack: Stack) -> None:
    model = f"solo-{uuid.uuid4().hex[:6]}"
    _seed(stack, model, {"1": Status.PRODUCTION}, production="1")
    await produce(stack.bootstrap, [build_message(_alert(model, "1"), source="urn:test:telemetry")])
    escalations = await collect(
        stack.bootstrap, [topics.INCIDENT_ESCALATED], keep=_is(model), wait_s=90,
        until=lambda got: any(b"NO SAFE VERSION" in r.value for r in got))
    _assert_alive(stack)
    loud = [orjson.loads(r.value) for r in escalations if b"NO SAFE VERSION" in r.value]
    assert loud and loud[0]["severity"] == "critical"
    with stack.uow() as uow:
        assert uow.ledger.get(model, "1").details["traffic_diverted"] is True  # type: ignore[union-attr]


def _onnx(path: Path) -> Path:
    w = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"])],
        "digits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], [numpy_helper.from_array(w, "w")])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def _code_running_pickle(command: str) -> bytes:
    """``os.system(command)`` as protocol-4 pickle opcodes, written by hand (never pickled or loaded here)."""
    cmd = command.encode()
    return (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c" + bytes([len(cmd)]) + cmd
            + b"\x94\x85\x94R\x94.")


async def test_supply_chain_approves_a_signed_model_and_rejects_a_lookalike_source(stack: Stack) -> None:
    model = f"sc-{uuid.uuid4().hex[:6]}"
    artifact = _onnx(stack.workdir / model / "model.onnx")
    signature = sign_model(artifact, stack.workdir / model / "model.sig", stack.private_key)
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()

    def event(version: str, url: str) -> ModelVersionPublished:
        return ModelVersionPublished(model=model, version=version, artifact_uri=artifact.as_uri(),
                                     artifact_digest=digest, source_url=url, submitter="ci",
                                     signature_uri=signature.as_uri(), provenance=provenance_document(url))

    # a pickle that would run code, named .onnx and correctly signed: the bytes decide, never the name
    marker = stack.workdir / f"{model}-pwned"
    hostile = stack.workdir / model / "evil" / "model.onnx"
    hostile.parent.mkdir()
    hostile.write_bytes(_code_running_pickle(f"touch {marker}"))
    hostile_sig = sign_model(hostile, hostile.parent / "model.sig", stack.private_key)
    hostile_event = ModelVersionPublished(
        model=model, version="3", artifact_uri=hostile.as_uri(),
        artifact_digest="sha256:" + hashlib.sha256(hostile.read_bytes()).hexdigest(),
        source_url="https://huggingface.co/acme/digits", submitter="ci", signature_uri=hostile_sig.as_uri(),
        provenance=provenance_document("https://huggingface.co/acme/digits"))
    await produce(stack.bootstrap, [
        (topics.MODEL_VERSION_PUBLISHED, b"{not json", model),
        build_message(event("1", "https://huggingface.co/acme/digits"), source="urn:test:registry"),
        build_message(event("2", "https://huggingface.co.evil.io/acme/digits"), source="urn:test:registry"),
        build_message(hostile_event, source="urn:test:registry"),
    ])
    out = await collect(stack.bootstrap, [topics.SUPPLY_CHAIN_VERDICT, topics.SCAN_REQUESTED,
                                          topics.dead_letter_topic(topics.MODEL_VERSION_PUBLISHED)],
                        keep=_is(model), until=lambda got: len(got) >= 5, wait_s=120)
    _assert_alive(stack)
    verdicts = {orjson.loads(r.value)["version"]: orjson.loads(r.value) for r in out
                if r.topic == topics.SUPPLY_CHAIN_VERDICT}
    assert verdicts["1"]["approved"] is True, verdicts["1"]["rationale"]
    assert verdicts["2"]["approved"] is False
    passed = {c["name"]: c["passed"] for c in verdicts["2"]["checks"]}
    assert passed["source"] is False  # the lookalike host is what rejects it; the artifact itself is fine
    assert all(passed[name] for name in ("integrity", "signature", "provenance", "serialization"))
    assert [orjson.loads(r.value)["version"] for r in out if r.topic == topics.SCAN_REQUESTED] == ["1"]
    hostile_checks = {c["name"]: c for c in verdicts["3"]["checks"]}
    assert verdicts["3"]["approved"] is False and hostile_checks["serialization"]["passed"] is False
    assert hostile_checks["signature"]["passed"] is True  # signed by a trusted key, and still refused
    assert not marker.exists()
    dead = [r for r in out if r.topic.endswith(".dlq")]
    assert len(dead) == 1 and b"not JSON" in dict(dead[0].headers)["dlq_reason"]
    with stack.uow() as uow:
        statuses = {v.version: v.status for v in uow.ledger.list(model)}
    assert statuses == {"1": Status.VALIDATED, "2": Status.REJECTED, "3": Status.REJECTED}

    def medium_incident_opened() -> bool:
        with stack.uow() as uow:
            return any(i.model == model and i.severity.label == "medium" for i in uow.incidents.list_incidents())

    assert await eventually(medium_incident_opened, wait_s=30)


async def test_a_signed_backdoored_model_from_a_trusted_source_is_quarantined_by_the_scanner(stack: Stack) -> None:
    model = f"scan-{uuid.uuid4().hex[:6]}"
    folder = stack.workdir / model
    folder.mkdir()
    artifact = folder / "model.onnx"
    artifact.write_bytes(stack.models.backdoored.read_bytes())
    signature = sign_model(artifact, folder / "model.sig", stack.private_key)
    url = "https://huggingface.co/acme/digits"
    event = ModelVersionPublished(model=model, version="1", artifact_uri=artifact.as_uri(),
                                  artifact_digest="sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest(),
                                  source_url=url, submitter="ci", signature_uri=signature.as_uri(),
                                  provenance=provenance_document(url))
    await produce(stack.bootstrap, [build_message(event, source="urn:test:registry")])
    [scan] = await collect(stack.bootstrap, [topics.SCAN_COMPLETED], keep=_is(model), wait_s=240,
                           until=lambda got: len(got) >= 1)
    _assert_alive(stack)
    body = orjson.loads(scan.value)
    assert (body["verdict"], body["backdoor_detected"], body["target_classes"][0]) == ("quarantined", True, 7)
    assert body["report_uri"] and Path(body["report_uri"].removeprefix("file://")).is_file()
    with stack.uow() as uow:
        assert uow.ledger.get(model, "1").status is Status.QUARANTINED  # type: ignore[union-attr]


def _request_remediation(stack: Stack, *args: str) -> str:
    """``bdguard registry request-remediation`` as a responder runs it; returns the request's event id."""
    from typer.testing import CliRunner

    from services.cli import app, build_app

    build_app()
    result = CliRunner().invoke(app, ["registry", "request-remediation", *args],
                                env={"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_a_remediation_request_on_the_bus_yields_a_candidate_that_passes_supply_chain_and_scanning(
        stack: Stack) -> None:
    model = f"fix-{uuid.uuid4().hex[:6]}"
    parent = stack.workdir / model / "parent.onnx"
    parent.parent.mkdir()
    parent.write_bytes(stack.models.backdoored.read_bytes())
    with stack.uow() as uow:
        digest = "sha256:" + hashlib.sha256(parent.read_bytes()).hexdigest()
        uow.ledger.add(ModelVersion(model, "1", parent.as_uri(), digest, status=Status.QUARANTINED))
        uow.commit()
    # same key, same partition: the refusal and the dead letter come first, then the real request
    await produce(stack.bootstrap, [(topics.REMEDIATION_REQUESTED, b'{"model": "x"}', model)])
    refused_id = await asyncio.to_thread(_request_remediation, stack, model, "9", "--who", "alice")
    request_id = await asyncio.to_thread(_request_remediation, stack, model, "1", "--who", "alice",
                                         "--incident", "inc-7")
    out = await collect(stack.bootstrap, [topics.REMEDIATION_COMPLETED, topics.SUPPLY_CHAIN_VERDICT,
                                          topics.SCAN_COMPLETED,
                                          topics.dead_letter_topic(topics.REMEDIATION_REQUESTED)],
                        keep=_is(model), until=lambda got: any(r.topic == topics.SCAN_COMPLETED for r in got),
                        wait_s=300)
    _assert_alive(stack)
    dead = [r for r in out if r.topic.endswith(".dlq")]
    assert len(dead) == 1 and b"required property" in dict(dead[0].headers)["dlq_reason"]
    outcomes = {o["request_id"]: o for r in out if r.topic == topics.REMEDIATION_COMPLETED
                for o in [orjson.loads(r.value)]}
    assert outcomes[refused_id]["status"] == "refused" and "not in the ledger" in outcomes[refused_id]["reason"]
    done = outcomes[request_id]
    assert (done["status"], done["version"], done["candidate_version"]) == ("proposed", "1", "1-fp1"), done
    assert done["incident_id"] == "inc-7" and done["figures"]["rounds"] == 2
    assert done["figures"]["asr_after"] < done["figures"]["asr_before"]
    verdict = next(orjson.loads(r.value) for r in out if r.topic == topics.SUPPLY_CHAIN_VERDICT)
    scan = next(orjson.loads(r.value) for r in out if r.topic == topics.SCAN_COMPLETED)
    assert verdict["approved"] is True, verdict["rationale"]
    assert verdict["artifact_digest"] == done["candidate_digest"]
    assert scan["version"] == "1-fp1" and scan["verdict"] == "scanned-clean", scan
    with stack.uow() as uow:
        actions = [e.action for e in uow.audit.iterate(subject=f"{model}/1")]
        candidate = uow.ledger.get(model, "1-fp1")
    assert "remediation.proposed" in actions
    assert candidate is not None and candidate.status is Status.SCANNED_CLEAN
    lineage = candidate.details["provenance"]
    assert lineage["model_provenance"]["parent"]["version"] == "1"
    assert lineage["remediation"]["rounds"][0]["pruned"]["indices"]  # which units were pruned
