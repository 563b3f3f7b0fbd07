"""docker-compose.yml stays valid and in step with the services that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
MODULE = re.compile(r"python -m services\.([a-z_]+)")


def _named_services() -> set[str]:
    return {m for svc in COMPOSE["services"].values() for m in MODULE.findall(str(svc.get("command", "")))}


def test_compose_runs_the_official_kafka_image_in_kraft_mode_and_postgres() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.1"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert COMPOSE["services"]["postgres"]["image"].startswith("postgres:")


def test_every_service_compose_names_exists_as_a_runnable_module() -> None:
    for name in _named_services():
        assert (ROOT / "services" / name / "__main__.py").is_file(), name


def test_every_runnable_service_has_a_container_in_compose() -> None:
    # the demo is a one-shot story that starts the services itself, not a service of its own
    runnable = {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")} - {"demo"}
    assert runnable <= _named_services()


def test_services_depend_on_healthy_infrastructure() -> None:
    for name, svc in COMPOSE["services"].items():
        if name in {"kafka", "postgres"}:
            continue
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy", name
