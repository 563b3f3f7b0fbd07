"""Find a Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS``, else the local jar broker, else testcontainers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shared.broker.jars import BrokerSetupError
from shared.broker.local import LocalBroker, free_port


def docker_engine_answers() -> bool:
    """True only when a Docker engine answers a ping (the ``docker`` client alone proves nothing)."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        return bool(client.ping())
    except Exception:
        return False


def start_testcontainers_kafka() -> tuple[str, object]:
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer("apache/kafka:3.9.1").with_kraft()
    container.start()
    return str(container.get_bootstrap_server()), container


def resolve_broker(work_dir: Path) -> tuple[str, object | None]:
    """Return ``(bootstrap, owner)``; ``owner`` is what the caller must stop (None when external)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env, None
    if shutil.which("java") and (shutil.which("mvn") or _jars_cached()):
        broker = LocalBroker(work_dir / "kafka", port=free_port(), controller_port=free_port())
        return broker.start(), broker
    if docker_engine_answers():
        return start_testcontainers_kafka()
    raise BrokerSetupError("no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS, install java+mvn, or run Docker")


def _jars_cached() -> bool:
    from shared.broker.jars import DEFAULT_LIBS_DIR, jars_present

    return jars_present(DEFAULT_LIBS_DIR)


def stop_owner(owner: object | None) -> None:
    if isinstance(owner, LocalBroker):
        owner.stop()
    elif owner is not None:
        owner.stop()  # type: ignore[attr-defined]
