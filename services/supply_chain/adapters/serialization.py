"""Per-file unsafe-serialization inspection: format by content, then the inspector for that format."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..domain.pickle_rules import global_allowed
from ..domain.policy import SupplyChainPolicy
from .archive_inspector import archive_members
from .filesystem import Artifact, file_opener
from .onnx_inspector import inspect_onnx
from .pickle_inspector import PickleParseError, scan_pickle
from .picklescan_opinion import second_opinion
from .safetensors_inspector import inspect_safetensors
from .sniffing import sniff_file

DATA_FORMATS = frozenset({"empty", "numpy"})
UNINSPECTABLE = frozenset({"zstd", "lz4", "7z", "rar", "hdf5", "gguf", "tflite", "unknown"})
CODE_SUFFIXES = frozenset({".py", ".pyw", ".sh", ".bash", ".bat", ".cmd", ".ps1"})
MAX_CONFIG_BYTES = 32 * 2**20
COMPRESSED_PICKLE = "compressed pickle (joblib compress=): refused, its stream cannot be scanned in place"


@dataclass
class FileReport:
    relpath: str
    fmt: str
    problems: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)


def _scan_pickle(
    label: str,
    opener: Callable[[], AbstractContextManager[IO[bytes]]],
    policy: SupplyChainPolicy,
    report: FileReport,
) -> list[str]:
    try:
        with opener() as raw:
            scan = scan_pickle(raw, policy.max_pickle_bytes)
    except PickleParseError as exc:
        return [f"{label}: {exc} (an unreadable pickle is never a pass)"]
    report.globals += [g for g in scan.globals if g not in report.globals]
    if not policy.allow_pickle:
        named = ", ".join(scan.globals)[:300]
        return [f"{label}: pickle-based serialization refused by policy (globals: {named})"]
    bad = [g for g in scan.globals if not global_allowed(g, policy.pickle_globals)]
    if bad:
        return [f"{label}: globals not on the allowlist: {', '.join(bad)[:300]}"]
    with opener() as raw:
        flagged = second_opinion(raw, label)
    return [flagged] if flagged else []


def code_file_problems(path: Path) -> list[str]:
    """Source code shipped with the weights, which a loader may run: ``transformers`` imports a model
    directory's ``*.py`` (``trust_remote_code``), and a ``config.json`` ``auto_map`` names such code, here
    or in another repository. Refused unless the policy's ``allow_code_files``."""
    if path.suffix.lower() in CODE_SUFFIXES:
        return [f"source code ({path.suffix}) ships with the model; a loader may run it (allow_code_files)"]
    if path.name.lower() != "config.json" or path.stat().st_size > MAX_CONFIG_BYTES:
        return []
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        return []
    if isinstance(config, dict) and "auto_map" in config:
        return ["config.json names remote code (auto_map), which trust_remote_code would run (allow_code_files)"]
    return []


def _inspect(path: Path, report: FileReport, policy: SupplyChainPolicy, external: set[Path]) -> None:
    fmt = report.fmt
    if fmt == "pickle":
        report.problems += _scan_pickle("pickle", file_opener(path), policy, report)
    elif fmt in ("zip", "tar", "gzip", "bz2", "xz"):

        def on_pickle(name: str, opener: Callable[[], AbstractContextManager[IO[bytes]]]) -> list[str]:
            if name == "data.pkl" or name.endswith("/data.pkl"):
                report.fmt = "pytorch-zip"
            return _scan_pickle(f"member {name[:120]!r}", opener, policy, report)

        report.problems += archive_members(path, fmt, policy.archive, on_pickle, policy.allow_unknown_formats)
    elif fmt == "safetensors":
        report.problems += inspect_safetensors(path, policy.safetensors_max_header)
    elif fmt == "compressed-pickle":
        report.problems.append(COMPRESSED_PICKLE)
    elif fmt == "numpy-object":
        report.problems.append("NumPy object array: its payload is a pickle")
    elif fmt.startswith("polyglot"):
        report.problems.append(f"{fmt}: content is two formats at once")
    elif fmt in UNINSPECTABLE and path.resolve() in external:
        report.fmt = "onnx-external-data"
    elif fmt in UNINSPECTABLE and not policy.allow_unknown_formats:
        report.problems.append(f"format {fmt!r} cannot be inspected safely")
    elif fmt == "text" and not policy.allow_text_files:
        report.problems.append("text files are not allowed by policy")
    elif fmt == "text" and not policy.allow_code_files:
        report.problems += code_file_problems(path)


def inspect_artifact(artifact: Artifact, policy: SupplyChainPolicy) -> tuple[list[FileReport], list[Path]]:
    """Inspect every file; return the reports and the ONNX files that passed (for the load check)."""
    reports = {f.relpath: FileReport(f.relpath, sniff_file(str(f.path))) for f in artifact.files}
    external: set[Path] = set()
    onnx_ok: list[Path] = []
    members = {f.path.resolve() for f in artifact.files}
    for item in artifact.files:
        report = reports[item.relpath]
        if report.fmt == "onnx":
            found = inspect_onnx(item.path, policy.max_onnx_bytes, policy.onnx_domains)
            report.problems += found.problems
            # beside a single-file artifact: a file no digest, signature or scan covers
            for outside in sorted(found.external_files - members):
                report.problems.append(f"external data {outside.name[:120]!r} is not part of the artifact")
            external |= found.external_files
            if not report.problems:
                onnx_ok.append(item.path)
    for item in artifact.files:
        if reports[item.relpath].fmt != "onnx":
            _inspect(item.path, reports[item.relpath], policy, external)
    return list(reports.values()), onnx_ok
