"""A producer that cannot reach its broker is closed again, not left open (aiokafka warns of that at exit)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from aiokafka.errors import KafkaConnectionError

from shared.messaging.publisher import KafkaPublisher

pytestmark = pytest.mark.unit


def test_a_publisher_whose_broker_is_unreachable_raises_and_leaves_no_open_producer() -> None:
    async def start() -> None:
        publisher = KafkaPublisher("127.0.0.1:1")  # nothing listens on port 1
        with pytest.raises(KafkaConnectionError):
            await publisher.start()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(start())
        gc.collect()
    assert not [w for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)]
