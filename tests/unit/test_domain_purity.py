"""Domain packages stay pure: no I/O library may be imported from any ``domain/`` module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"faust", "aiokafka", "kafka", "sqlalchemy", "onnxruntime", "onnx", "structlog", "httpx",
             "requests", "fastapi", "psycopg", "model_signing", "sklearn", "socket", "subprocess", "PIL",
             "typer", "rich", "alembic", "uvicorn", "aiohttp"}
PURE_DIRS = sorted({p.parent for p in ROOT.glob("services/*/domain/**/*.py")}
                   | {ROOT / "shared" / "audit", ROOT / "shared" / "ledger"})


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", PURE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_modules_import_no_io_library(folder: Path) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN) for p in folder.glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
