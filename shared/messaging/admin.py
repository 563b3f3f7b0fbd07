"""Create topics (and their dead-letter topics) with the catalogue's partition counts."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contracts.validation import SCHEMAS_DIR
from shared.topics import dead_letter_topic


def catalogue_partitions(catalogue: Path = SCHEMAS_DIR / "topics.json") -> dict[str, int]:
    """Topic name → partitions, input topics' dead-letter topics included (1 partition each)."""
    entries = json.loads(catalogue.read_text())["topics"]
    partitions = {t["name"]: int(t["partitions"]) for t in entries}
    partitions.update({dead_letter_topic(t["name"]): 1 for t in entries})
    return partitions


async def ensure_topics(bootstrap_servers: str, partitions: dict[str, int]) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, n, 1) for name, n in partitions.items() if name not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won the race
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()
