"""Run a service's faust app as a worker process (``python -m services.<name>``).

The store is migrated by the operator (``bdguard db upgrade``), never concurrently by each worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.logging import configure_logging, get_logger
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.settings import ServiceSettings


def run_worker(create_app: Callable[[Any], Any], settings: ServiceSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
    # topics exist with the catalogue's partition counts before any agent subscribes
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, catalogue_partitions()))
    app = create_app(settings)
    get_logger(__name__).info("worker starting", app=app.conf.id, broker=settings.kafka_bootstrap_servers)
    import faust

    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
