"""The state store of in-process runs and service-layer tests: a dict, nothing durable."""

from __future__ import annotations

from collections.abc import Collection


class InMemoryStore:
    """A process-local store (in-process runs and tests of the service layer)."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.partition_of: dict[str, int] = {}

    async def load(self) -> None:
        return None

    def mark_stale(self) -> None:
        return None

    def get(self, key: str) -> object | None:
        return self.data.get(key)

    async def put(self, key: str, value: object, partition: int) -> None:
        self.data[key], self.partition_of[key] = value, partition

    def stored_keys(self) -> list[str]:
        return list(self.data)

    def keys_on(self, partitions: Collection[int]) -> dict[str, int]:
        return {key: p for key, p in self.partition_of.items() if p in partitions}
