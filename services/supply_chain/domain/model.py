"""The wire event, the check results and the verdict (pure value objects)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class ModelVersionPublished:
    """A model version the registry has published and wants validated.

    ``artifact_digest`` is ``"sha256:<hex>"`` of the single file, or for a directory the digest of its
    canonical manifest (see :func:`domain.digests.manifest_digest`). ``artifact_manifest`` is optional:
    a per-file manifest ``{relative/path: "sha256:<hex>"}`` that may be given instead for a directory.
    """

    model: str
    version: str
    artifact_uri: str
    artifact_digest: str
    source_url: str
    signature_uri: str | None
    provenance: Mapping[str, Any] | None
    submitter: str
    clean_data_uri: str | None = None
    artifact_manifest: Mapping[str, str] | None = None  # in-process callers only; not on the wire

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersionPublished:
        """Build from a ``registry.model-version-published.v1`` payload; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("signature_uri", None)
        values.setdefault("provenance", None)
        return cls(**values)


@dataclass(frozen=True)
class CheckResult:
    """One named check; ``evidence`` stays small and JSON-serialisable."""

    name: str
    passed: bool
    severity: Severity
    details: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "severity": self.severity,
            "details": self.details,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class SupplyChainVerdict:
    """The outcome for one model version; ``artifact_digest`` is the digest we computed."""

    model: str
    version: str
    approved: bool
    checks: tuple[CheckResult, ...]
    rationale: str
    artifact_digest: str
    artifact_uri: str = ""
    clean_data_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``supply-chain.verdict.v1`` payload."""
        return {
            "model": self.model,
            "version": self.version,
            "approved": self.approved,
            "artifact_uri": self.artifact_uri,
            "artifact_digest": self.artifact_digest,
            "rationale": self.rationale,
            "checks": [c.to_dict() for c in self.checks],
            "clean_data_uri": self.clean_data_uri,
        }


def is_blocking(check: CheckResult, blocking: Iterable[Severity]) -> bool:
    """A failed check blocks approval when its severity is in ``blocking``."""
    return not check.passed and check.severity in tuple(blocking)


def decide_verdict(
    event: ModelVersionPublished,
    checks: Iterable[CheckResult],
    artifact_digest: str,
    blocking: Iterable[Severity] = ("critical", "high", "medium"),
) -> SupplyChainVerdict:
    """Approve only when no blocking check failed; the rationale names every failure."""
    results = tuple(checks)
    blockers = [c for c in results if is_blocking(c, blocking)]
    if blockers:
        rationale = "rejected: " + "; ".join(f"{c.name} ({c.severity}): {c.details}" for c in blockers)
    else:
        rationale = f"approved: {sum(c.passed for c in results)} of {len(results)} checks passed"
        warnings = [c for c in results if not c.passed]
        if warnings:
            rationale += "; non-blocking: " + "; ".join(f"{c.name}: {c.details}" for c in warnings)
    return SupplyChainVerdict(
        model=event.model,
        version=event.version,
        approved=not blockers,
        checks=results,
        rationale=rationale,
        artifact_digest=artifact_digest,
        artifact_uri=event.artifact_uri,
        clean_data_uri=event.clean_data_uri,
    )
