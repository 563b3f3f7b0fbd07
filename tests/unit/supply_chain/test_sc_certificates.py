from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.model import ModelVersionPublished
from services.supply_chain.service_layer.validate import validate_model_version

from .conftest import onnx_model

pytestmark = pytest.mark.unit


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    usage = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "crl_sign"], False
    )
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=issuer is not None, key_cert_sign=issuer is None, encipher_only=False,
                      decipher_only=False, **usage),
        critical=True,
    )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key, rogue_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    leaf_key_path = tmp_path / "leaf.key"
    leaf_key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {
        "ca": _write(tmp_path / "ca.pem", _cert("bdguard test CA", ca_key, None)),
        "rogue_ca": _write(tmp_path / "rogue.pem", _cert("rogue CA", rogue_key, None)),
        "leaf": _write(tmp_path / "leaf.pem", _cert("model publisher", leaf_key, ("bdguard test CA", ca_key))),
        "leaf_key": leaf_key_path,
    }


def test_a_certificate_signed_model_verifies_only_against_its_own_ca(
    tmp_path: Path, pki: dict[str, Path], make_event: Callable[..., ModelVersionPublished]
) -> None:
    from model_signing import signing

    model = tmp_path / "model.onnx"
    onnx.save(onnx_model(), model)
    signing.Config().use_certificate_signer(
        private_key=pki["leaf_key"], signing_certificate=pki["leaf"], certificate_chain=[pki["ca"]]
    ).sign(model, tmp_path / "model.sig")
    event = make_event(model, signature_uri=str(tmp_path / "model.sig"))

    trusted = SupplyChainSettings(certificate_chain=[pki["ca"]], ort_load_enabled=False)
    verdict = validate_model_version(event, trusted)
    signature = next(c for c in verdict.checks if c.name == "signature")
    assert signature.passed and signature.evidence["method"] == "certificate", signature.details

    rogue = SupplyChainSettings(certificate_chain=[pki["rogue_ca"]], ort_load_enabled=False)
    signature = next(c for c in validate_model_version(event, rogue).checks if c.name == "signature")
    assert not signature.passed and signature.severity == "critical"
