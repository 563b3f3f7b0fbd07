"""Use case: validate one published model version and return a verdict.

Checks run in a fixed order: source, integrity, signature, provenance, serialization, and last the
onnxruntime load, which runs only when nothing before it blocked. A check that raises becomes a
failed critical check; this function never raises for a hostile artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters.filesystem import Artifact, ArtifactLayoutError, load_artifact, sha256_file, uri_to_path
from ..adapters.ort_loader import load_with_onnxruntime
from ..adapters.serialization import inspect_artifact
from ..adapters.signatures import verify_signature
from ..config import SupplyChainSettings
from ..domain.digests import DigestFormatError, digests_match, manifest_digest, parse_digest
from ..domain.model import CheckResult, ModelVersionPublished, SupplyChainVerdict, decide_verdict, is_blocking
from ..domain.policy import SupplyChainPolicy
from ..domain.provenance import validate_provenance
from ..domain.source import assess_source

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
CHECK_NAMES = ("source", "integrity", "signature", "provenance", "serialization", "runtime_load")


@dataclass
class _Run:
    event: ModelVersionPublished
    settings: SupplyChainSettings
    policy: SupplyChainPolicy
    artifact: Artifact | None = None
    digest: str = ""
    onnx_models: list[Path] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)


def _result(name: str, passed: bool, severity: Any, details: str, **evidence: Any) -> CheckResult:
    return CheckResult(name, passed, "info" if passed and severity != "low" else severity, details, evidence)


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, "info", f"skipped: {why}", {"skipped": True})


def check_source(run: _Run) -> CheckResult:
    found = assess_source(run.event.source_url, run.policy.all_trusted_sources)
    severity = "critical" if found.tricks else "high"
    details = f"trusted source {found.matched}" if found.trusted else "; ".join(found.tricks + found.problems)
    return _result("source", found.trusted, severity, details, host=found.host, matched=found.matched,
                   tricks=list(found.tricks), problems=list(found.problems))  # fmt: skip


def _compare(run: _Run, hashes: dict[str, str]) -> list[str]:
    event, failures = run.event, []
    if event.artifact_manifest is not None:
        declared = dict(event.artifact_manifest)
        failures += [f"not in manifest: {p}" for p in sorted(set(hashes) - set(declared))]
        failures += [f"missing from artifact: {p}" for p in sorted(set(declared) - set(hashes))]
        for path in sorted(set(hashes) & set(declared)):
            if not digests_match(parse_digest(declared[path])[1], hashes[path]):
                failures.append(f"digest mismatch: {path}")
    computed = run.digest.removeprefix("sha256:")
    if event.artifact_digest and not digests_match(parse_digest(event.artifact_digest)[1], computed):
        failures.append(f"artifact digest mismatch (declared {event.artifact_digest[:80]})")
    return failures


def check_integrity(run: _Run) -> CheckResult:
    policy = run.policy
    try:
        run.artifact = artifact = load_artifact(
            run.event.artifact_uri, max_file_bytes=policy.max_file_bytes,
            max_total_bytes=policy.max_total_bytes, max_files=policy.max_files,
        )  # fmt: skip
    except ArtifactLayoutError as exc:
        return _result("integrity", False, "critical", str(exc))
    hashes = {f.relpath: sha256_file(f.path, policy.max_file_bytes) for f in artifact.files}
    run.digest = manifest_digest(hashes) if artifact.is_dir else "sha256:" + hashes[artifact.files[0].relpath]
    evidence = {"computed": run.digest, "files": len(hashes), "bytes": artifact.total_bytes}
    if not run.event.artifact_digest and run.event.artifact_manifest is None:
        ok = not policy.require_declared_digest
        return _result("integrity", ok, "high", "no declared digest or manifest to compare", **evidence)
    try:
        failures = _compare(run, hashes)
    except DigestFormatError as exc:
        return _result("integrity", False, "high", f"declared digest malformed: {exc}", **evidence)
    details = "; ".join(failures[:10]) or f"{len(hashes)} file(s) match the declared digest"
    return _result("integrity", not failures, "critical", details, mismatches=failures[:50], **evidence)


def check_signature(run: _Run) -> CheckResult:
    event, policy = run.event, run.policy
    if run.artifact is None:
        return _skipped("signature", "artifact unavailable")
    if not event.signature_uri:
        tolerated = (
            bool(policy.unsigned_allowed_sources)
            and assess_source(event.source_url, policy.unsigned_allowed_sources).trusted
        )
        if tolerated or not policy.require_signature:
            return _result("signature", True, "low", "unsigned; tolerated by policy for this source")
        return _result("signature", False, "high", "unsigned; policy requires a signature for this source")
    outcome = verify_signature(run.artifact.root, uri_to_path(event.signature_uri), run.settings.trust_anchors())
    severity = "high" if outcome.method in ("sigstore", "unknown") and "offline" in outcome.details else "critical"
    return _result("signature", outcome.verified, severity, outcome.details, method=outcome.method)


def check_provenance(run: _Run) -> CheckResult:
    problems = validate_provenance(run.event.provenance)
    details = "; ".join(problems) or "all control-card provenance fields present and well-formed"
    return _result("provenance", not problems, "high", details, problems=problems)


def check_serialization(run: _Run) -> CheckResult:
    if run.artifact is None:
        return _skipped("serialization", "artifact unavailable")
    reports, run.onnx_models = inspect_artifact(run.artifact, run.policy)
    bad = [r for r in reports if r.problems]
    evidence = [{"path": r.relpath, "format": r.fmt, "problems": r.problems[:20], "globals": r.globals[:50]}
                for r in reports[:100]]  # fmt: skip
    details = "; ".join(f"{r.relpath} [{r.fmt}]: {'; '.join(r.problems[:3])}" for r in bad[:5])
    formats = sorted({r.fmt for r in reports})
    return _result("serialization", not bad, "critical", details or f"formats {formats} are safe", files=evidence)


def check_runtime_load(run: _Run) -> CheckResult:
    if any(is_blocking(c, run.policy.blocking) for c in run.checks):
        return _skipped("runtime_load", "an earlier check failed; onnxruntime never sees the model")
    if not run.onnx_models:
        return _result("runtime_load", True, "info", "no ONNX model to load")
    if not run.settings.ort_load_enabled:
        return _result("runtime_load", False, "low", "onnxruntime load check disabled by configuration")
    loaded = {}
    for model in run.onnx_models:
        outcome = load_with_onnxruntime(
            model,
            timeout_s=run.settings.ort_load_timeout_s,
            memory_limit_bytes=run.settings.ort_load_memory_limit_bytes,
        )
        if not outcome.loaded:
            return _result("runtime_load", False, "high", f"{model.name}: {outcome.details}")
        loaded[model.name] = outcome.signature
    return _result("runtime_load", True, "info", f"{len(loaded)} ONNX model(s) loaded", models=loaded)


CHECKS: tuple[tuple[str, Callable[[_Run], CheckResult]], ...] = (
    ("source", check_source),
    ("integrity", check_integrity),
    ("signature", check_signature),
    ("provenance", check_provenance),
    ("serialization", check_serialization),
    ("runtime_load", check_runtime_load),
)


def _guarded(name: str, check: Callable[[_Run], CheckResult], run: _Run) -> CheckResult:
    try:
        return check(run)
    except Exception as exc:  # a hostile file must never take the service down
        log.warning("supply-chain check %s crashed: %s", name, type(exc).__name__)
        return CheckResult(name, False, "critical", f"check crashed: {type(exc).__name__}: {str(exc)[:200]}")


def validate_model_version(
    event: ModelVersionPublished, settings: SupplyChainSettings, *, progress: Progress | None = None
) -> SupplyChainVerdict:
    """Run every supply-chain check on one published model version.

    Args:
        event: the registry's record of the version (artifact location, digests, signature, provenance).
        settings: policy, limits and trust anchors.
        progress: called with each check's name before it runs (for a CLI spinner).

    Returns:
        The verdict; ``approved`` is False when any check of a blocking severity failed.
    """
    run = _Run(event, settings, settings.policy())
    for name, check in CHECKS:
        if progress is not None:
            try:
                progress(name)
            except Exception:  # a broken progress display must not change the verdict
                progress = None
        run.checks.append(_guarded(name, check, run))
    verdict = decide_verdict(event, run.checks, run.digest, run.policy.blocking)
    failed = [c.name for c in run.checks if not c.passed]
    log.info("supply-chain verdict model=%s version=%s approved=%s failed=%s",
             event.model, event.version, verdict.approved, ",".join(failed) or "-")  # fmt: skip
    return verdict
