"""Signing artifacts with OpenSSF model-signing (elliptic-curve keys), for the registry side."""

from __future__ import annotations

from pathlib import Path


def sign_model(model_path: Path, signature: Path, private_key: Path) -> Path:
    """Sign a model file or directory; the sigstore bundle lands at ``signature``."""
    from model_signing import signing

    signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model_path, signature)  # type: ignore[no-untyped-call]
    return signature
