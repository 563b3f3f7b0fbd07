"""Shared fixtures: a real Kafka broker and real stores (SQLite file and PostgreSQL).

Broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the project's local jar broker, else testcontainers
when a Docker engine answers. PostgreSQL: ``BDGUARD_TEST_POSTGRES_URL`` (``.ci/run`` starts one). In CI
(``CI=true``) a missing broker or PostgreSQL is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.broker.resolve import resolve_broker, stop_owner
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.db.unit_of_work import SqlUnitOfWork

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in {"unit", "contract", "integration", "agents", "e2e"}:
            item.add_marker(getattr(pytest.mark, layer))
        elif Path(str(item.fspath)).parent.parent.name in {"unit", "integration"}:
            item.add_marker(getattr(pytest.mark, Path(str(item.fspath)).parent.parent.name))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bootstrap, owner = resolve_broker(tmp_path_factory.mktemp("broker"))
    os.environ.setdefault("BDGUARD_TEST_BROKER", bootstrap)
    yield bootstrap
    stop_owner(owner)


def _postgres_url() -> str:
    url = os.environ.get("BDGUARD_TEST_POSTGRES_URL", "")
    if not url:
        if IN_CI:
            pytest.fail("BDGUARD_TEST_POSTGRES_URL is not set in CI: .ci/run must start PostgreSQL")
        pytest.skip("PostgreSQL not configured (set BDGUARD_TEST_POSTGRES_URL or run .ci/run)")
    return url


def _fresh(url: str) -> str:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        return _fresh(f"sqlite:///{tmp_path / 'bdguard.db'}")
    return _fresh(_postgres_url())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _fresh(f"sqlite:///{tmp_path / 'bdguard.db'}")


@pytest.fixture
def uow_factory(store_url: str) -> Iterator[object]:
    engine = make_engine(store_url)
    factory = make_session_factory(engine)
    yield lambda: SqlUnitOfWork(factory)
    engine.dispose()
