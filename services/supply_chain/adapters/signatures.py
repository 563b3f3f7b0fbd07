"""OpenSSF model-signing 1.1.1 verification: EC key, certificate chain, or sigstore with local trust.

A fresh ``verifying.Config`` is built for every model and every candidate key. Sigstore bundles are
verified only with a local trust configuration; without one, verification would need the network
(TUF root refresh), so it is reported as not verifiable instead of attempted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_BUNDLE_BYTES = 16 * 2**20
MAX_KEY_BYTES = 64 * 2**10  # a PEM public key is well under 1 KiB; more is not one
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # the curves model-signing verifies with


@dataclass(frozen=True)
class SignatureOutcome:
    verified: bool
    method: str  # "elliptic-key" | "certificate" | "sigstore" | "unknown"
    details: str


@dataclass(frozen=True)
class TrustAnchors:
    public_keys: tuple[Path, ...] = ()
    certificate_chain: tuple[Path, ...] = ()
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None
    sigstore_trust_config: Path | None = None


def bundle_method(signature_path: Path) -> str:
    """Which verifier a bundle needs, read from its verification material."""
    if signature_path.stat().st_size > MAX_BUNDLE_BYTES:
        raise ValueError(f"signature bundle larger than {MAX_BUNDLE_BYTES} bytes")
    material = json.loads(signature_path.read_bytes()).get("verificationMaterial", {})
    if "publicKey" in material:
        return "elliptic-key"
    if material.get("tlogEntries"):
        return "sigstore"
    if "x509CertificateChain" in material or "certificate" in material:
        return "certificate"
    return "unknown"


def public_key_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve the elliptic-key verifier (not a PEM public key, not EC, an unsupported
    curve), or ``None``: read before any check runs, so a wrong key is refused rather than silently unused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if len(data) > MAX_KEY_BYTES:
        return f"is larger than {MAX_KEY_BYTES} bytes: not a PEM public key"
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):  # cryptography's reason is a FAQ link, not the file's problem
        return "is a private key: give its public half" if b"PRIVATE KEY-----" in data else "is not a PEM public key"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
        return f"is a public key of type {kind}, not an elliptic-curve (EC) one"
    if key.curve.name not in EC_CURVES:
        return f"uses curve {key.curve.name}; model signing verifies {', '.join(EC_CURVES)}"
    return None


def _attempt(model: Path, signature: Path, configure: str, **kwargs: object) -> str | None:
    from model_signing import verifying  # imported lazily: ~0.7 s, and only this adapter needs it

    config = getattr(verifying.Config(), configure)(**kwargs)  # type: ignore[no-untyped-call]
    try:
        config.verify(model, signature)
    except Exception as exc:  # model-signing raises ValueError and sigstore/cryptography errors
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _try_keys(model: Path, signature: Path, keys: Sequence[Path]) -> SignatureOutcome:
    errors = []
    for key in keys:
        error = _attempt(model, signature, "use_elliptic_key_verifier", public_key=key)
        if error is None:
            return SignatureOutcome(True, "elliptic-key", f"verified with public key {key.name}")
        errors.append(f"{key.name}: {error}")
    return SignatureOutcome(False, "elliptic-key", "; ".join(errors) or "no public key configured")


def verify_signature(model: Path, signature: Path, anchors: TrustAnchors) -> SignatureOutcome:
    """Verify ``signature`` (a model-signing bundle) over ``model`` (a file or a directory)."""
    try:
        method = bundle_method(signature)
    except (OSError, ValueError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        return SignatureOutcome(False, "unknown", f"unreadable signature bundle: {type(exc).__name__}")
    if method == "elliptic-key":
        return _try_keys(model, signature, anchors.public_keys)
    if method == "certificate":
        if not anchors.certificate_chain:
            return SignatureOutcome(False, method, "no certificate chain configured (OS store not trusted)")
        chain = list(anchors.certificate_chain)
        error = _attempt(model, signature, "use_certificate_verifier", certificate_chain=chain)
        return SignatureOutcome(error is None, method, error or "verified against the configured chain")
    if method == "sigstore":
        if not (anchors.sigstore_trust_config and anchors.sigstore_identity and anchors.sigstore_issuer):
            return SignatureOutcome(
                False,
                method,
                "sigstore bundle: offline verification needs a local trust config, identity and OIDC "
                "issuer (BDGUARD_SUPPLY_CHAIN_SIGSTORE_*); refusing to fetch trust roots from the network",
            )
        error = _attempt(
            model, signature, "use_sigstore_verifier", identity=anchors.sigstore_identity,
            oidc_issuer=anchors.sigstore_issuer, trust_config=anchors.sigstore_trust_config,
        )  # fmt: skip
        return SignatureOutcome(error is None, method, error or f"verified for {anchors.sigstore_identity}")
    return SignatureOutcome(False, method, "bundle carries no recognised verification material")
