"""Which worker windows a model version: the one owning its model's home partition (no I/O).

The monitor keeps one state per model version, so all of a version's predictions have to reach one
worker. Our client keys its messages by the model name, so Kafka's default partitioner puts every version
of a model on the model's home partition (:func:`shared.messaging.rekey.home_partition`); those batches
are windowed where they arrive. A plain client sending no key, or another key, spreads a version over
every partition: a batch that arrives off its model's home partition is forwarded, as it is, to the
internal re-keyed topic, on the home partition there, and windowed by whoever owns that partition of both
topics. A group mixing model versions is thereby split per version (a message holds one version).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from services.telemetry.service_layer.wire import DecodedBatch
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import OutgoingMessage
from shared.messaging.rekey import forwarded_copy, home_partition


@dataclass(frozen=True)
class Rekey:
    """The internal ``topic`` predictions are re-keyed to; it has as many ``partitions`` as the input."""

    topic: str
    partitions: int

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions={self.partitions} must be >= 1")

    def home(self, model: str) -> int:
        """The partition (of the predictions topic and of the re-keyed one) ``model`` is windowed on."""
        return home_partition(model, self.partitions)

    def split(self, deliveries: list[Delivery]) -> tuple[list[Delivery], list[OutgoingMessage]]:
        """The deliveries already on their model's home partition (windowed here, no extra hop), and a copy of
        each other one for the re-keyed topic, in arrival order, on its model's home partition."""
        local: list[Delivery] = []
        copies: list[OutgoingMessage] = []
        for delivery in deliveries:
            record = delivery.record
            assert isinstance(record, DecodedBatch)
            home = self.home(record.batch.model)
            if delivery.partition == home:
                local.append(delivery)
            else:
                copies.append(self.copy(delivery, record, home))
        return local, copies

    def copy(self, delivery: Delivery, record: DecodedBatch, home: int) -> OutgoingMessage:
        """The original bytes and attributes, keyed like our client keys them, with the original position (the
        monitor's duplicate check works on it: a batch forwarded twice after a crash counts once)."""
        value = record.raw if record.raw is not None else orjson.dumps(record.batch.to_wire())
        return forwarded_copy(topic=self.topic, key=record.batch.model, partition=home, value=value,
                              attrs=delivery.attrs, source_partition=delivery.partition,
                              source_offset=delivery.offset)
