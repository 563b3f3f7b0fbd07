from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DOMAIN = Path(__file__).resolve().parents[3] / "services" / "supply_chain" / "domain"
ALLOWED_THIRD_PARTY = {"numpy"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_domain_package_imports_only_the_standard_library_and_numpy() -> None:
    files = sorted(DOMAIN.glob("**/*.py"))
    assert files, "domain package not found"
    for path in files:
        outside = _imported_roots(path) - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY - {"__future__"}
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_the_domain_package_does_not_import_io_libraries_even_from_the_standard_library() -> None:
    io_modules = {"subprocess", "socket", "shutil", "tempfile", "zipfile", "tarfile", "pickle", "http", "urllib3"}
    for path in sorted(DOMAIN.glob("**/*.py")):
        assert not (_imported_roots(path) & io_modules), path.name
