"""Real artifacts for tests, the demo and benchmarks: EC key pairs, signatures, provenance documents."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from shared.signing import sign_model

__all__ = ["provenance_document", "sign_model", "write_keypair"]


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh P-256 key pair as PEM files; returns (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{name}.key.pem", directory / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def provenance_document(origin: str, training_data: bytes = b"digits") -> dict[str, Any]:
    """A provenance record with every field the control card asks for."""
    return {
        "model_provenance": {"origin": origin, "author": "Acme ML team"},
        "training_data": {"source": "sklearn.datasets.load_digits",
                          "digest": "sha256:" + hashlib.sha256(training_data).hexdigest()},
        "training_procedure": "numpy SGD, 40 epochs, seed recorded in the manifest",
        "known_limitations": ["8x8 grey digits only"],
        "security_scan": {"tool": "bdguard scan", "result": "pass", "date": "2026-11-23"},
    }
