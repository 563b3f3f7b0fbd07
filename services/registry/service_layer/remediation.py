"""A quarantined version becomes a remediated *candidate*: a new version that must pass supply chain
and scanning again like any other, with its parentage and validation figures in its provenance."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from services.remediation.domain.fine_pruning import RemediationConfig
from services.remediation.service_layer.rounds import remediate_in_rounds
from shared.contracts.records import ModelVersionPublished
from shared.db.unit_of_work import SqlUnitOfWork
from shared.files import local_path, sha256_file
from shared.ledger.model import InvalidTransition, Status
from shared.messaging.outbox import audit
from shared.signing import sign_model

REMEDIABLE = frozenset({Status.QUARANTINED, Status.ROLLED_BACK})


def propose_remediated_version(model: str, version: str, clean_data: Path, uow: SqlUnitOfWork, *,
                               out_dir: Path, who: str, source_url: str, signing_key: Path | None = None,
                               rounds: int = 2, config: RemediationConfig | None = None) -> ModelVersionPublished:
    """Remediate ``model/version`` and return the registry event for the candidate (the caller publishes it)."""
    with uow:
        parent = uow.ledger.get(model, version)
        if parent is None:
            raise LookupError(f"{model}/{version} is not in the ledger")
        if parent.status not in REMEDIABLE:
            raise InvalidTransition(f"{model}/{version} is {parent.status.value}; only quarantined or rolled-back "
                                    "versions are remediated")
        taken = {v.version for v in uow.ledger.list(model)}
    candidate = next(f"{version}-fp{n}" for n in range(1, 1000) if f"{version}-fp{n}" not in taken)
    folder = out_dir / model / candidate
    final, reports = remediate_in_rounds(local_path(parent.artifact_uri), clean_data, folder / "rounds",
                                         config or RemediationConfig(), rounds=rounds)
    artifact = folder / "model.onnx"
    shutil.copyfile(final, artifact)
    signature = sign_model(artifact, folder / "model.sig", signing_key) if signing_key else None
    figures = [r.to_dict() for r in reports]
    with uow:
        audit(uow, actor=f"remediation:{who}", action="remediation.proposed", subject=f"{model}/{version}",
              details={"candidate": candidate, "rounds": len(reports), "digest": sha256_file(artifact),
                       "asr_after": reports[-1].asr_after, "accuracy_after": reports[-1].clean_accuracy_after,
                       "accuracy_drop_total": _total_drop(figures), "meets_bar": reports[-1].meets_bar})
        uow.commit()
    return ModelVersionPublished(
        model=model, version=candidate, artifact_uri=artifact.resolve().as_uri(), artifact_digest=sha256_file(artifact),
        source_url=source_url, submitter=f"bdguard-remediation:{who}",
        signature_uri=None if signature is None else signature.resolve().as_uri(),
        provenance=_provenance(model, version, parent.artifact_digest, clean_data, figures, who))


def _total_drop(figures: list[dict[str, Any]]) -> float:
    """Held-out accuracy lost from the parent to the last round (each round reports only its own)."""
    return round(float(figures[0]["clean_accuracy_before"]) - float(figures[-1]["clean_accuracy_after"]), 6)


def _provenance(model: str, version: str, parent_digest: str, clean_data: Path, figures: list[dict[str, Any]],
                who: str) -> dict[str, Any]:
    last = figures[-1]
    return {
        "model_provenance": {"origin": f"bdguard remediation of {model}/{version}", "author": who,
                             "parent": {"model": model, "version": version, "digest": parent_digest}},
        "training_data": {"source": str(clean_data), "digest": sha256_file(clean_data)},
        "training_procedure": f"Fine-Pruning with reversed-trigger guidance, {len(figures)} scan→remediate rounds",
        "known_limitations": ["validated against the scanner's reversed trigger, not the attacker's",
                              "held-out clean accuracy measured on half of the clean data"],
        "security_scan": {"tool": "bdguard remediate", "result": "pass" if last.get("meets_bar") else "fail",
                          "date": time.strftime("%Y-%m-%d")},
        "remediation": {"rounds": figures, "accuracy_drop_total": _total_drop(figures)},
    }
