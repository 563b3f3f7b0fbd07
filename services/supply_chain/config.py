"""Settings for the supply-chain service (env prefix ``BDGUARD_SUPPLY_CHAIN_``).

Lists are read from the environment as JSON, e.g.
``BDGUARD_SUPPLY_CHAIN_INTERNAL_REGISTRIES='["registry.corp.example/models"]'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

from .adapters.signatures import TrustAnchors
from .domain.model import Severity
from .domain.policy import (
    DEFAULT_ONNX_DOMAINS,
    DEFAULT_PICKLE_GLOBALS,
    DEFAULT_TRUSTED_SOURCES,
    ArchiveLimits,
    SupplyChainPolicy,
)

GIB = 2**30


def _default_blocking() -> list[Severity]:
    return ["critical", "high", "medium"]


class SupplyChainSettings(ServiceSettings):
    """Policy, limits and trust anchors for validating published model versions."""

    model_config = SettingsConfigDict(env_prefix="BDGUARD_SUPPLY_CHAIN_", env_file=".env", extra="ignore", frozen=True)

    trusted_sources: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUSTED_SOURCES))
    internal_registries: list[str] = Field(default_factory=list)
    unsigned_allowed_sources: list[str] = Field(default_factory=list)
    require_signature: bool = True
    require_declared_digest: bool = True

    public_keys: list[Path] = Field(default_factory=list)
    certificate_chain: list[Path] = Field(default_factory=list)
    sigstore_identity: str | None = None
    sigstore_oidc_issuer: str | None = None
    sigstore_trust_config: Path | None = None

    max_file_bytes: int = Field(default=8 * GIB, gt=0)
    max_total_bytes: int = Field(default=32 * GIB, gt=0)
    max_files: int = Field(default=10_000, gt=0)
    max_onnx_bytes: int = Field(default=2 * GIB - 1, gt=0)
    max_pickle_bytes: int = Field(default=2 * GIB, gt=0)
    allow_pickle: bool = False
    pickle_globals: list[str] = Field(default_factory=lambda: list(DEFAULT_PICKLE_GLOBALS))
    onnx_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_ONNX_DOMAINS))
    archive_max_entries: int = Field(default=10_000, gt=0)
    archive_max_ratio: float = Field(default=200.0, gt=1)
    archive_max_total_uncompressed: int = Field(default=32 * GIB, gt=0)
    archive_max_nesting: int = Field(default=0, ge=0)
    safetensors_max_header: int = Field(default=100_000_000, gt=0, le=100_000_000)
    allow_unknown_formats: bool = False
    allow_text_files: bool = True
    allow_code_files: bool = False
    blocking_severities: list[Severity] = Field(default_factory=_default_blocking)

    ort_load_enabled: bool = True
    ort_load_timeout_s: float = Field(default=120.0, gt=0)
    ort_load_memory_limit_bytes: int = Field(default=8 * GIB, ge=0)

    def policy(self) -> SupplyChainPolicy:
        """The pure policy object the checks apply."""
        return SupplyChainPolicy(
            trusted_sources=tuple(self.trusted_sources),
            internal_registries=tuple(self.internal_registries),
            unsigned_allowed_sources=tuple(self.unsigned_allowed_sources),
            require_signature=self.require_signature,
            require_declared_digest=self.require_declared_digest,
            max_file_bytes=self.max_file_bytes,
            max_total_bytes=self.max_total_bytes,
            max_files=self.max_files,
            max_onnx_bytes=self.max_onnx_bytes,
            max_pickle_bytes=self.max_pickle_bytes,
            allow_pickle=self.allow_pickle,
            pickle_globals=tuple(self.pickle_globals),
            onnx_domains=tuple(self.onnx_domains),
            archive=ArchiveLimits(
                max_entries=self.archive_max_entries,
                max_ratio=self.archive_max_ratio,
                max_total_uncompressed=self.archive_max_total_uncompressed,
                max_nesting=self.archive_max_nesting,
            ),
            safetensors_max_header=self.safetensors_max_header,
            allow_unknown_formats=self.allow_unknown_formats,
            allow_text_files=self.allow_text_files,
            allow_code_files=self.allow_code_files,
            blocking=tuple(self.blocking_severities),
        )

    def trust_anchors(self) -> TrustAnchors:
        """Keys, certificate chain and sigstore trust used to verify signatures."""
        return TrustAnchors(
            public_keys=tuple(self.public_keys),
            certificate_chain=tuple(self.certificate_chain),
            sigstore_identity=self.sigstore_identity,
            sigstore_issuer=self.sigstore_oidc_issuer,
            sigstore_trust_config=self.sigstore_trust_config,
        )
