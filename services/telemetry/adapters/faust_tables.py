"""Monitor state in faust tables whose changelog writes cannot fall behind the committed offsets.

A plain ``table[key] = value`` queues the changelog record in faust's producer buffer, and faust's
commit path waits only 0.1 s for that buffer before it commits the input offsets. Under load a
large state record can still be queued when the offset is committed; a crash then recovers a state
older than the position the worker resumes from, and the predictions in between are lost from the
windows (seen as a window re-published with part of its count). Here the record is handed straight
to the Kafka producer and acknowledged by the broker before the batch is: the committed offset can
never pass the changelog, and a rebalance that re-reads the changelog into the store (faust recovers
a reassigned partition from it) finds the latest state, not one a write still in flight would follow.
One broker round trip per group of batches, not per batch.
"""

from __future__ import annotations

from typing import Any

import faust


class ChangeloggedTable:
    """Read through the table, write the local store and the changelog record together."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> object | None:
        value: object | None = self.table.get(key)
        return value

    async def put(self, key: str, value: object, partition: int) -> None:
        """``partition``: that of the input messages behind the write (tables are co-partitioned with
        their source topic, which is how a restarted worker finds the state of its partitions)."""
        table = self.table
        table.data[key] = value  # the local store only: no buffered changelog write
        delivery = await table.changelog_topic.send(key=key, value=value, partition=partition,
                                                    key_serializer=table.key_serializer,
                                                    value_serializer=table.value_serializer)
        await delivery


def changelogged_table(app: faust.App, name: str, codec: str) -> ChangeloggedTable:
    table: Any = app.Table(name, key_type=str, default=None)
    # faust derives the codec from a Record value_type; ours are plain objects with their own codec.
    # The store and the changelog topic are created lazily, so setting it here reaches both.
    table.value_serializer = codec
    return ChangeloggedTable(table)
