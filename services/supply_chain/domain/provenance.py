"""Provenance record required by the control card, validated field by field.

Expected shape (JSON)::

    {
      "model_provenance": {"origin": "https://...", "author": "..."},
      "training_data": {"source": "...", "digest": "sha256:<hex>"}      # or "manifest": {path: digest}
      "training_procedure": "..." | {...non-empty...},
      "known_limitations": "..." | ["...", ...],
      "security_scan": {"tool": "...", "result": "pass", "date": "..."} | [that, ...]
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .digests import DigestFormatError, parse_digest

REQUIRED_FIELDS = (
    "model_provenance",
    "training_data",
    "training_procedure",
    "known_limitations",
    "security_scan",
)
PASSING_SCAN_RESULTS = frozenset({"pass", "passed", "clean", "ok", "no findings"})
DIGEST_ALGORITHMS = ("sha256", "sha384", "sha512")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_provenance(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return ["model_provenance: must be an object with 'origin' and 'author'"]
    return [f"model_provenance.{k}: missing or empty" for k in ("origin", "author") if not _text(value.get(k))]


def _check_digest(path: str, value: Any) -> list[str]:
    try:
        parse_digest(value if isinstance(value, str) else "", DIGEST_ALGORITHMS)
    except DigestFormatError as exc:
        return [f"{path}: malformed digest ({exc})"]
    return []


def _check_training_data(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return ["training_data: must be an object with 'source' and 'digest' or 'manifest'"]
    problems = [] if _text(value.get("source")) else ["training_data.source: missing or empty"]
    if "digest" in value:
        problems += _check_digest("training_data.digest", value["digest"])
    elif isinstance(value.get("manifest"), Mapping) and value["manifest"]:
        for name, digest in value["manifest"].items():
            problems += _check_digest(f"training_data.manifest[{str(name)[:60]!r}]", digest)
    else:
        problems.append("training_data.digest: missing (a hash or a non-empty manifest is required)")
    return problems


def _check_scans(value: Any) -> list[str]:
    scans = value if isinstance(value, list) else [value]
    if not scans or not all(isinstance(s, Mapping) for s in scans):
        return ["security_scan: must be an object (or list of objects) with 'tool' and 'result'"]
    problems = []
    for i, scan in enumerate(scans):
        if not _text(scan.get("tool")):
            problems.append(f"security_scan[{i}].tool: missing or empty")
        result = scan.get("result")
        if not _text(result):
            problems.append(f"security_scan[{i}].result: missing or empty")
        elif str(result).strip().lower() not in PASSING_SCAN_RESULTS:
            problems.append(f"security_scan[{i}].result: reports {str(result)[:60]!r}, not a pass")
    return problems


def validate_provenance(record: Mapping[str, Any] | None) -> list[str]:
    """Return one message per missing or malformed field; empty means the record is complete."""
    if record is None:
        return ["provenance: missing"]
    if not isinstance(record, Mapping):
        return ["provenance: must be a JSON object"]
    missing = [f"{name}: missing" for name in REQUIRED_FIELDS if name not in record]
    if missing:
        return missing
    problems = _check_provenance(record["model_provenance"]) + _check_training_data(record["training_data"])
    procedure = record["training_procedure"]
    if not (_text(procedure) or (isinstance(procedure, Mapping) and procedure)):
        problems.append("training_procedure: missing or empty")
    limits = record["known_limitations"]
    if not (_text(limits) or (isinstance(limits, list) and limits and all(_text(x) for x in limits))):
        problems.append("known_limitations: missing or empty")
    return problems + _check_scans(record["security_scan"])
