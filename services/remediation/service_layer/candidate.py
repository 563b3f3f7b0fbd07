"""A quarantined version becomes a remediated *candidate*: a new version that must pass supply chain
and scanning again like any other, with its parentage and validation figures in its provenance.

Three steps, so that callers keep the slow middle one out of any transaction: :func:`choose_parent`
(ledger read), :func:`build_candidate` (minutes of CPU, files only), :func:`audit_proposal` (inside the
caller's transaction, next to whatever else it stages).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.remediation.domain.fine_pruning import RemediationConfig
from services.remediation.service_layer.rounds import remediate_in_rounds
from shared.contracts.records import ModelVersionPublished
from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import local_path, sha256_file
from shared.ledger.model import InvalidTransition, ModelVersion, Status
from shared.messaging.outbox import audit
from shared.signing import sign_model

REMEDIABLE = frozenset({Status.QUARANTINED, Status.ROLLED_BACK})
PROPOSED = "remediation.proposed"
# (parent model, clean data, work folder) -> (final model, each round's report as a dict)
Remediator = Callable[[Path, Path, Path], tuple[Path, list[dict[str, Any]]]]


def fine_pruning(config: RemediationConfig | None = None, *, rounds: int = 2, nc_seconds: float = 30.0) -> Remediator:
    """The real remediator: scan → Fine-Pruning, ``rounds`` times (see :mod:`rounds`)."""

    def run(model: Path, clean: Path, work: Path) -> tuple[Path, list[dict[str, Any]]]:
        final, reports = remediate_in_rounds(model, clean, work, config or RemediationConfig(), rounds=rounds,
                                             nc_seconds=nc_seconds)
        return final, [r.to_dict() for r in reports]

    return run


@dataclass(frozen=True)
class Candidate:
    """A built candidate: the registry event to publish and the per-round figures behind it."""

    parent: ModelVersion
    event: ModelVersionPublished
    figures: list[dict[str, Any]]

    @property
    def meets_bar(self) -> bool:
        return bool(self.figures[-1].get("meets_bar"))

    def summary(self) -> dict[str, Any]:
        """The figures a responder reads: first round's "before", last round's "after"."""
        first, last = self.figures[0], self.figures[-1]
        return {"rounds": len(self.figures), "target": last.get("target"),
                "all_to_all": bool(last.get("all_to_all", False)), "asr_before": first.get("asr_before"),
                "asr_after": last.get("asr_after"), "accuracy_before": float(first["clean_accuracy_before"]),
                "accuracy_after": float(last["clean_accuracy_after"]), "accuracy_drop_total": _total_drop(self.figures)}


def choose_parent(model: str, version: str, uow: SqlUnitOfWork, out_dir: Path) -> tuple[ModelVersion, str]:
    """The version to remediate and a candidate name no version, earlier proposal or folder uses yet.

    Raises:
        LookupError: the ledger has never seen ``model/version``.
        InvalidTransition: the version is neither quarantined nor rolled back.
    """
    parent = uow.ledger.get(model, version)
    if parent is None:
        raise LookupError(f"{model}/{version} is not in the ledger")
    if parent.status not in REMEDIABLE:
        raise InvalidTransition(f"{model}/{version} is {parent.status.value}; only quarantined or rolled-back "
                                "versions are remediated")
    # an earlier candidate may not be in the ledger yet (supply chain is still validating it)
    taken = {v.version for v in uow.ledger.list(model)}
    taken |= {str(e.details.get("candidate")) for e in uow.audit.iterate(subject=parent.key) if e.action == PROPOSED}
    taken |= {p.name for p in (out_dir / model).glob(f"{version}-fp*")}
    return parent, next(f"{version}-fp{n}" for n in range(1, 10_000) if f"{version}-fp{n}" not in taken)


def check_parent_bytes(parent: ModelVersion) -> Path:
    """The parent's file, provided it still holds the bytes the ledger recorded (it is what gets remediated).

    Raises:
        ValueError: the file is missing or its digest differs from the ledger's.
    """
    path = local_path(parent.artifact_uri)
    if not path.is_file():
        raise ValueError(f"{parent.key}: artifact {path} is missing")
    if sha256_file(path) != parent.artifact_digest:
        raise ValueError(f"{parent.key}: artifact changed since the ledger recorded it (digest mismatch)")
    return path


def build_candidate(parent: ModelVersion, candidate: str, clean_data: Path, *, remediator: Remediator,
                    out_dir: Path, who: str, source_url: str, signing_key: Path | None = None) -> Candidate:
    """Remediate the parent's bytes into ``out_dir/<model>/<candidate>/model.onnx`` (signed when a key is given)."""
    folder = out_dir / parent.model / candidate
    final, figures = remediator(check_parent_bytes(parent), clean_data, folder / "rounds")
    if not figures:
        raise ValueError("the remediator reported no rounds")
    artifact = folder / "model.onnx"
    shutil.copyfile(final, artifact)
    signature = sign_model(artifact, folder / "model.sig", signing_key) if signing_key else None
    event = ModelVersionPublished(
        model=parent.model, version=candidate, artifact_uri=artifact.resolve().as_uri(),
        artifact_digest=sha256_file(artifact), source_url=source_url, submitter=f"bdguard-remediation:{who}",
        signature_uri=None if signature is None else signature.resolve().as_uri(),
        provenance=_provenance(parent, clean_data, figures, who))
    return Candidate(parent, event, figures)


def audit_proposal(uow: SqlUnitOfWork, candidate: Candidate, who: str, correlation_id: str | None = None) -> None:
    """The ``remediation.proposed`` audit record, in the caller's transaction."""
    summary = candidate.summary()
    audit(uow, actor=f"remediation:{who}", action=PROPOSED, subject=candidate.parent.key,
          details={"candidate": candidate.event.version, "rounds": summary["rounds"],
                   "digest": candidate.event.artifact_digest, "asr_after": summary["asr_after"],
                   "accuracy_after": summary["accuracy_after"], "accuracy_drop_total": summary["accuracy_drop_total"],
                   "meets_bar": candidate.meets_bar}, correlation_id=correlation_id)


def _total_drop(figures: list[dict[str, Any]]) -> float:
    """Held-out accuracy lost from the parent to the last round (each round reports only its own)."""
    return round(float(figures[0]["clean_accuracy_before"]) - float(figures[-1]["clean_accuracy_after"]), 6)


def _provenance(parent: ModelVersion, clean_data: Path, figures: list[dict[str, Any]], who: str) -> dict[str, Any]:
    return {
        "model_provenance": {"origin": f"bdguard remediation of {parent.key}", "author": who,
                             "parent": {"model": parent.model, "version": parent.version,
                                        "digest": parent.artifact_digest}},
        "training_data": {"source": str(clean_data), "digest": sha256_file(clean_data)},
        "training_procedure": f"Fine-Pruning with reversed-trigger guidance, {len(figures)} scan→remediate rounds",
        "known_limitations": ["validated against the scanner's reversed trigger, not the attacker's",
                              "held-out clean accuracy measured on half of the clean data"],
        "security_scan": {"tool": "bdguard remediate", "result": "pass" if figures[-1].get("meets_bar") else "fail",
                          "date": time.strftime("%Y-%m-%d")},
        "remediation": {"rounds": figures, "accuracy_drop_total": _total_drop(figures)},
    }
