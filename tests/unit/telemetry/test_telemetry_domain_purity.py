"""The telemetry domain imports nothing but the standard library, numpy and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DOMAIN = Path(__file__).resolve().parents[3] / "services" / "telemetry" / "domain"
ALLOWED_THIRD_PARTY = {"numpy"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


def test_domain_modules_import_only_stdlib_numpy_and_the_domain_itself() -> None:
    files = sorted(DOMAIN.glob("**/*.py"))
    assert files, f"no domain modules under {DOMAIN}"
    offenders = {}
    for path in files:
        bad = {m for m in _imported_roots(path)
               if m.split(".")[0] not in sys.stdlib_module_names
               and m.split(".")[0] not in ALLOWED_THIRD_PARTY
               and not m.startswith("services.telemetry.domain")}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
