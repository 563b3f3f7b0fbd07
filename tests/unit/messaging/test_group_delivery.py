"""Many messages per handler call: bad ones dead-lettered, a failing group handled one by one."""

from __future__ import annotations

import orjson

from services.telemetry.service_layer.wire import decode_batch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.messaging.delivery import Delivery, RawEvent, deliver_group
from shared.messaging.publisher import RecordingPublisher

POISON = "poison"


def _event(value: bytes, offset: int) -> RawEvent:
    return RawEvent(value=value, key=b"m", headers=[], partition=0, offset=offset)


def _good(traffic: Traffic, offset: int, server: str = "s1") -> RawEvent:
    wire = traffic.batch(50).to_wire()
    wire["server_id"] = server
    return _event(orjson.dumps(wire), offset)


async def _run(events: list[RawEvent]) -> tuple[list[list[int]], RecordingPublisher, int]:
    calls: list[list[int]] = []
    publisher = RecordingPublisher()

    async def handle(group: list[Delivery]) -> None:
        calls.append([d.offset for d in group])
        if any(d.record.batch.server_id == POISON for d in group):  # type: ignore[union-attr]
            raise RuntimeError("cannot handle this one")

    handled = await deliver_group(topic=topics.PREDICTIONS, consumer="test", events=events, handle=handle,
                                  publisher=publisher, decode=decode_batch)
    return calls, publisher, handled


async def test_valid_messages_reach_the_handler_in_one_call_and_malformed_ones_are_dead_lettered() -> None:
    traffic = Traffic(10, seed=1, model="m")
    calls, publisher, handled = await _run([_good(traffic, 1), _event(b"{]", 2), _good(traffic, 3)])
    assert calls == [[1, 3]] and handled == 2
    [dead] = publisher.sent
    assert dead.topic == topics.dead_letter_topic(topics.PREDICTIONS) and dead.value == b"{]"
    headers = dict(dead.headers)
    assert b"not JSON" in headers["dlq_reason"] and headers["dlq_source_offset"] == b"2"


async def test_when_the_group_fails_the_messages_are_retried_alone_and_only_the_culprit_is_dead_lettered() -> None:
    traffic = Traffic(10, seed=2, model="m")
    events = [_good(traffic, 1), _good(traffic, 2, server=POISON), _good(traffic, 3)]
    calls, publisher, handled = await _run(events)
    assert calls == [[1, 2, 3], [1], [2], [3]] and handled == 2
    [dead] = publisher.sent
    assert dict(dead.headers)["dlq_source_offset"] == b"2"
    assert b"handler failed: RuntimeError" in dict(dead.headers)["dlq_reason"]
