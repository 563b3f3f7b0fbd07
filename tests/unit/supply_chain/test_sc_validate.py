from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.digests import manifest_digest
from services.supply_chain.domain.model import ModelVersionPublished, SupplyChainVerdict
from services.supply_chain.service_layer import validate
from services.supply_chain.service_layer.validate import CHECK_NAMES, validate_model_version

from .conftest import onnx_model, sha256, sign, with_external

pytestmark = pytest.mark.unit
Keys = dict[str, tuple[Path, Path]]
MakeEvent = Callable[..., ModelVersionPublished]


def check(verdict: SupplyChainVerdict, name: str) -> Any:
    return next(c for c in verdict.checks if c.name == name)


@pytest.fixture
def signed_model(tmp_path: Path, keys: Keys) -> tuple[Path, Path]:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    return model, sign(model, tmp_path / "model.sig", keys["good"][0])


def test_a_clean_signed_onnx_model_is_approved_after_onnxruntime_loads_it(
    signed_model: tuple[Path, Path], make_event: MakeEvent, keys: Keys
) -> None:
    model, signature = signed_model
    settings = SupplyChainSettings(public_keys=[keys["good"][1]])
    verdict = validate_model_version(make_event(model, signature_uri=str(signature)), settings)
    assert verdict.approved, verdict.rationale
    assert [c.name for c in verdict.checks] == list(CHECK_NAMES)
    assert all(c.passed for c in verdict.checks)
    assert check(verdict, "runtime_load").evidence["models"]["model.onnx"]["inputs"][0]["name"] == "X"
    assert verdict.artifact_digest == sha256(model)
    json.dumps(verdict.to_dict())


def test_a_model_tampered_after_signing_fails_both_digest_and_signature(
    signed_model: tuple[Path, Path], make_event: MakeEvent, settings: SupplyChainSettings
) -> None:
    model, signature = signed_model
    event = make_event(model, signature_uri=str(signature))  # digest declared before tampering
    tampered = onnx_model(np.full(16, 7, dtype=np.float32))
    onnx.save(tampered, model)
    verdict = validate_model_version(event, settings)
    assert not verdict.approved
    assert not check(verdict, "integrity").passed and check(verdict, "integrity").severity == "critical"
    assert not check(verdict, "signature").passed and "mismatch" in check(verdict, "signature").details
    assert check(verdict, "runtime_load").evidence.get("skipped") is True


def test_a_signature_from_an_untrusted_key_is_rejected(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings, keys: Keys
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    signature = sign(model, tmp_path / "model.sig", keys["other"][0])
    verdict = validate_model_version(make_event(model, signature_uri=str(signature)), settings)
    assert not check(verdict, "signature").passed
    assert "Key mismatch" in check(verdict, "signature").details


def test_an_unsigned_model_is_rejected_unless_its_source_is_allowed_unsigned(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    assert not validate_model_version(make_event(model), settings).approved
    lenient = settings.model_copy(update={"unsigned_allowed_sources": ["huggingface.co/models/acme"]})
    verdict = validate_model_version(make_event(model), lenient)
    assert verdict.approved, verdict.rationale
    assert check(verdict, "signature").severity == "low"


def test_a_sigstore_bundle_without_local_trust_is_reported_as_not_verifiable_offline(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    bundle = {"verificationMaterial": {"certificate": {"rawBytes": "AA=="}, "tlogEntries": [{"logIndex": 1}]}}
    (tmp_path / "model.sig").write_text(json.dumps(bundle))
    verdict = validate_model_version(make_event(model, signature_uri=str(tmp_path / "model.sig")), settings)
    result = check(verdict, "signature")
    assert not result.passed and result.evidence["method"] == "sigstore" and "offline" in result.details


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("security_scan"), "security_scan"),
        (lambda p: p["training_data"].update(digest="md5:abc"), "training_data.digest"),
        (lambda p: p["training_data"].update(digest="sha256:" + "A" * 64), "training_data.digest"),
        (lambda p: p["model_provenance"].pop("author"), "model_provenance.author"),
        (lambda p: p.update(known_limitations=[]), "known_limitations"),
        (lambda p: p["security_scan"].update(result="2 critical findings"), "security_scan[0].result"),
    ],
)
def test_missing_or_malformed_provenance_is_rejected_naming_the_field(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings, provenance: dict[str, Any],
    mutate: Callable[[dict[str, Any]], object], field: str,
) -> None:  # fmt: skip
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    mutate(provenance)
    verdict = validate_model_version(make_event(model, provenance=provenance), settings)
    assert not verdict.approved and field in check(verdict, "provenance").details


def test_a_directory_is_checked_file_by_file_against_its_manifest(
    tmp_path: Path, make_event: MakeEvent, keys: Keys
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = onnx_model()
    with_external(model, "weights.bin")
    (model_dir / "weights.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    onnx.save(model, model_dir / "model.onnx")
    signature = sign(model_dir, tmp_path / "model.sig", keys["good"][0])
    manifest = {p.name: sha256(p) for p in model_dir.iterdir()}
    event = make_event(model_dir, signature_uri=str(signature), artifact_manifest=manifest)
    settings = SupplyChainSettings(public_keys=[keys["good"][1]])
    verdict = validate_model_version(event, settings)
    assert verdict.approved, verdict.rationale
    assert verdict.artifact_digest == manifest_digest({k: v[7:] for k, v in manifest.items()})

    (model_dir / "extra.txt").write_text("smuggled")
    verdict = validate_model_version(event, settings.model_copy(update={"ort_load_enabled": False}))
    assert not verdict.approved and "not in manifest: extra.txt" in check(verdict, "integrity").details


def test_an_unexpected_exception_in_a_check_becomes_a_failed_critical_check(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object) -> None:
        raise RecursionError("hostile nesting")

    monkeypatch.setattr(validate, "inspect_artifact", explode)
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    verdict = validate_model_version(make_event(model), settings)
    result = check(verdict, "serialization")
    assert not verdict.approved and not result.passed and result.severity == "critical"
    assert "RecursionError" in verdict.rationale


def test_a_missing_artifact_and_a_symlinked_artifact_are_rejected_not_raised(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings
) -> None:
    real = tmp_path / "real.onnx"
    onnx.save(onnx_model(), real)
    (tmp_path / "link.onnx").symlink_to(real)
    for uri in [str(tmp_path / "absent.onnx"), f"file://{tmp_path / 'link.onnx'}"]:
        verdict = validate_model_version(make_event(real, artifact_uri=uri), settings)
        assert not verdict.approved and not check(verdict, "integrity").passed


def test_a_malformed_declared_digest_is_a_failure(
    tmp_path: Path, make_event: MakeEvent, settings: SupplyChainSettings
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    verdict = validate_model_version(make_event(model, artifact_digest="sha256:xyz"), settings)
    assert "malformed" in check(verdict, "integrity").details


def test_the_verdict_payload_matches_the_supply_chain_verdict_schema_and_the_event_reads_the_wire_example(
    tmp_path: Path, settings: SupplyChainSettings, provenance: dict[str, Any]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schemas = Path(__file__).resolve().parents[3] / "schemas"
    published = json.loads((schemas / "registry.model-version-published.v1.schema.json").read_text())
    verdict_schema = json.loads((schemas / "supply-chain.verdict.v1.schema.json").read_text())
    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    wire = {**published["examples"][0], "artifact_uri": model.as_uri(), "artifact_digest": sha256(model)}
    wire["provenance"], wire["clean_data_uri"] = provenance, "file:///data/clean"
    jsonschema.validate(wire, published)
    verdict = validate_model_version(ModelVersionPublished.from_dict(wire), settings)
    payload = json.loads(json.dumps(verdict.to_dict()))
    jsonschema.validate(payload, verdict_schema)
    assert payload["artifact_uri"] == model.as_uri() and payload["clean_data_uri"] == "file:///data/clean"
    assert check(verdict, "integrity").passed
