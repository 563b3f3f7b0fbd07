"""Domain packages stay pure: the standard library (minus its I/O modules), numpy, and other pure code.

One test for every ``services/*/domain`` package and the pure shared packages, so a new service's
domain is covered the day it is created.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_STDLIB = {"subprocess", "socket", "shutil", "tempfile", "zipfile", "tarfile", "pickle", "shelve", "marshal",
             "http", "urllib", "ftplib", "smtplib", "sqlite3", "asyncio", "multiprocessing", "ssl", "select"}
PURE_STDLIB_SUBMODULES = {"urllib.parse"}  # string parsing only
PURE_SHARED = ("shared.ledger", "shared.audit")
PURE_DIRS = sorted({p.parent for p in ROOT.glob("services/*/domain/**/*.py")}
                   | {ROOT / "shared" / "audit", ROOT / "shared" / "ledger"})


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _allowed(module: str, own_domain: str) -> bool:
    root = module.split(".")[0]
    if module in PURE_STDLIB_SUBMODULES:
        return True
    if root in sys.stdlib_module_names or root == "__future__":
        return root not in IO_STDLIB
    return root == "numpy" or module.startswith(own_domain) or module.startswith(PURE_SHARED)


@pytest.mark.parametrize("folder", PURE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_modules_import_only_pure_code(folder: Path) -> None:
    rel = folder.relative_to(ROOT).parts
    own = ".".join(rel[: rel.index("domain") + 1]) if "domain" in rel else ".".join(rel)
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if not _allowed(m, own))
                 for p in folder.glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
