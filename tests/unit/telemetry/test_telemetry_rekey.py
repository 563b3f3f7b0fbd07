"""Re-keying: batches off their model's home partition are forwarded there as they are, split per model
version, and windowed by that partition's worker once, at their source position (no broker here)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.telemetry.bootstrap import InMemoryStore, Rekey, TelemetryService
from services.telemetry.client.buffer import Chunk
from services.telemetry.client.encoding import encode_message
from services.telemetry.service_layer import monitor
from services.telemetry.service_layer.idle import IdleTracker
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig
from services.telemetry.service_layer.wire import decode_batch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.messaging.delivery import RawEvent, deliver_group, header_pairs
from shared.messaging.envelope import OutgoingMessage
from shared.messaging.rekey import SOURCE_OFFSET, SOURCE_PARTITION, deliver_copies, home_partition

PARTITIONS = 3
REKEYED = "bdguard-telemetry-predictions-by-model"
T0 = 1_700_000_000.0
# the lateness outlasts the traffic of a test: arrival order across partitions cannot make a batch late
CFG = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=300.0, baseline_size=1_000, early_eval_s=0.0)


def _model_on(home: int, prefix: str = "m") -> str:
    return next(name for i in itertools.count() if home_partition(name := f"{prefix}{i}", PARTITIONS) == home)


class Collecting:
    """The topics as a worker writes them: every message, in order."""

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []
        self.offsets = itertools.count()

    async def publish(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def on(self, topic: str) -> list[OutgoingMessage]:
        return [m for m in self.messages if m.topic == topic]

    def window_counts(self, model: str) -> dict[str, set[int]]:
        """Event id of each window-stats record -> every count published under it."""
        found: dict[str, set[int]] = {}
        for m in self.on(topics.WINDOW_STATS):
            if (body := orjson.loads(m.value))["model"] == model:
                found.setdefault(dict(m.headers)["ce_id"].decode(), set()).add(body["count"])
        return found


def _worker(owned: set[int], publisher: Collecting, states: InMemoryStore | None = None) -> TelemetryService:
    service = TelemetryService(CFG, states or InMemoryStore(), InMemoryStore(), publisher, clock=lambda: 5_000.0,
                               idle=IdleTracker(10.0), rekey=Rekey(REKEYED, PARTITIONS))
    service.idle.assigned(owned)
    return service


def _unkeyed(batches: list[Any], partitions: list[int], next_offset: dict[int, int] | None = None,
             ) -> list[RawEvent]:
    """Messages of a plain client without key or CloudEvents headers, on the given partitions in turn
    (``next_offset``: the last offset used on each partition, updated)."""
    next_offset = {} if next_offset is None else next_offset
    events = []
    for batch, p in zip(batches, itertools.cycle(partitions)):
        offset = next_offset[p] = next_offset.get(p, -1) + 1
        events.append(RawEvent(orjson.dumps(batch.to_wire()), None, None, p, offset))
    return events


async def _consume(service: TelemetryService, events: list[RawEvent]) -> None:
    """``track_predictions`` of one worker, handed ``events`` as one group."""
    await deliver_group(topic=topics.PREDICTIONS, consumer="track_predictions", events=events,
                        handle=service.on_predictions, publisher=service.publisher, decode=decode_batch)


async def _consume_copies(service: TelemetryService, copies: list[OutgoingMessage], offsets: itertools.count[int],
                          ) -> None:
    """``track_forwarded_predictions`` of the worker owning their partition (each read at a new offset)."""
    events = [RawEvent(c.value, c.key.encode() if c.key else None, c.headers, c.partition or 0, next(offsets))
              for c in copies]
    await deliver_copies(topic=REKEYED, source_topic=topics.PREDICTIONS, consumer="track_forwarded_predictions",
                         events=events, handle=service.on_batches, publisher=service.publisher, decode=decode_batch)


@pytest.mark.parametrize("model", ["digits", "m0", "resnet-50", "ünïcode", "a|b", "x" * 300])
def test_the_home_partition_is_where_our_client_and_kafkas_default_partitioner_put_a_model(model: str) -> None:
    traffic = Traffic(10, seed=1, model=model)
    batch = traffic.batch(3)
    chunk = Chunk((model, "1", 10), batch.ids, batch.ts, batch.pred, batch.conf, batch.entropy, batch.sig, None)
    key, _, _ = encode_message([chunk], server_id="s", source="urn:test")
    assert key == model.encode()  # our client keys by the model name
    for partitions in (1, 3, 12):
        chosen = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
        assert home_partition(model, partitions) == chosen


async def test_a_batch_on_its_models_home_partition_is_windowed_where_it_arrives_with_no_copy() -> None:
    model = _model_on(1)
    publisher = Collecting()
    worker = _worker({1}, publisher)
    await _consume(worker, _unkeyed([Traffic(10, 2, model=model).batch(100)], [1]))
    assert publisher.on(REKEYED) == [] and worker.counters["batches"] == 1 and worker.counters["forwarded"] == 0


async def test_a_group_mixing_model_versions_is_split_per_version_each_copy_on_its_models_home_partition() -> None:
    a, b = _model_on(2, "a"), _model_on(1, "b")
    traffic = {(a, "1"): Traffic(10, 3, model=a, version="1"), (a, "2"): Traffic(10, 4, model=a, version="2"),
               (b, "1"): Traffic(10, 5, model=b, version="1")}
    order = [(a, "1"), (b, "1"), (a, "2"), (a, "1"), (b, "1"), (a, "2")]
    events = _unkeyed([traffic[k].batch(50) for k in order], [0])
    publisher = Collecting()
    worker = _worker({0}, publisher)
    await _consume(worker, events)  # one group: three versions, none of them at home on partition 0

    copies = publisher.on(REKEYED)
    assert [c.value for c in copies] == [e.value for e in events]  # the original bytes, in arrival order
    for copy, event, (model, version) in zip(copies, events, order, strict=True):
        headers = dict(copy.headers)
        assert (copy.key, copy.partition) == (model, home_partition(model, PARTITIONS))
        assert headers["ce_subject"] == f"{model}/{version}".encode()
        assert headers["ce_id"] == f"{topics.PREDICTIONS}/0/{event.offset}".encode()  # stable across redelivery
        assert (headers[SOURCE_PARTITION], headers[SOURCE_OFFSET]) == (b"0", str(event.offset).encode())
    assert worker.counters["forwarded"] == 6 and worker.counters["batches"] == 0


async def test_malformed_input_is_dead_lettered_with_its_reason_and_never_forwarded() -> None:
    publisher = Collecting()
    worker = _worker({0}, publisher)
    good = _unkeyed([Traffic(10, 6, model=_model_on(2)).batch(50)], [0])[0]
    await _consume(worker, [RawEvent(b"{]", None, None, 0, 7), RawEvent(good.value, None, None, 0, 8)])
    [dead] = publisher.on(topics.dead_letter_topic(topics.PREDICTIONS))
    assert dead.value == b"{]" and b"not JSON" in dict(dead.headers)["dlq_reason"]
    assert [c.value for c in publisher.on(REKEYED)] == [good.value]


async def test_two_workers_publish_each_window_once_with_the_count_of_all_partitions_even_when_copies_repeat(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # only the source position can tell a repeated copy now (the batch-id memory holds one batch)
    monkeypatch.setattr(monitor, "MAX_REMEMBERED_BATCHES", 2)
    model = _model_on(1)
    outputs = Collecting()
    a, b = _worker({0, 2}, outputs), _worker({1}, outputs)  # the group's assignment: model's home is b's
    traffic = Traffic(10, seed=7, model=model, start=T0)
    used: dict[int, int] = {}
    events = _unkeyed([traffic.batch(100) for _ in range(10)], [1], used)  # the baseline, on the home partition
    events += _unkeyed([traffic.batch(100) for _ in range(40)], [0, 1, 2], used)  # 4 windows, every partition
    traffic.t += 400  # the last batch closes them all
    events += _unkeyed([traffic.batch(100)], [2], used)
    copies_offsets = itertools.count()
    await _consume(b, events[:10])
    for p, worker in ((0, a), (1, b), (2, a)):
        await _consume(worker, [e for e in events[10:-1] if e.partition == p])
    forwarded = outputs.on(REKEYED)
    await _consume_copies(b, forwarded, copies_offsets)
    await _consume_copies(b, forwarded, copies_offsets)  # a forwarder killed before its commit sends them again
    await _consume(a, events[-1:])
    await _consume_copies(b, outputs.on(REKEYED)[len(forwarded):], copies_offsets)

    assert outputs.window_counts(model) == {f"ws-{model}-1-{T0 + s}": {1000} for s in (10.0, 20.0, 30.0, 40.0)}
    assert a.counters["batches"] == 0 and b.counters["predictions"] == 1000 + 4000 + 100


async def test_a_state_is_written_on_its_models_home_partition_and_swept_by_its_owner_only() -> None:
    model = _model_on(2)
    states, outputs = InMemoryStore(), Collecting()
    a, b = _worker({0, 1}, outputs, states), _worker({2}, outputs, states)
    traffic = Traffic(10, seed=8, model=model, start=T0)
    await _consume(a, _unkeyed([traffic.batch(500) for _ in range(3)], [0]))
    await _consume_copies(b, outputs.on(REKEYED), itertools.count())
    assert states.partition_of == {f"{model}|1": 2}  # where it was windowed, not where it came in

    # a state written before re-keying sat on partition 0: the home partition's owner sweeps it
    states.partition_of[f"{model}|1"] = 0
    for worker in (a, b):
        worker.clock = lambda: 5_000.0 + 400  # quiet for longer than the idle time and the lateness
    assert await a.close_idle_windows() == 0
    assert await b.close_idle_windows() == 1
    assert states.partition_of == {f"{model}|1": 2}
    state = states.get(f"{model}|1")
    assert isinstance(state, MonitorState) and state.windows == {}


class FailingOn(Collecting):
    def __init__(self, topic: str) -> None:
        super().__init__()
        self.topic = topic

    async def publish(self, message: OutgoingMessage) -> None:
        if message.topic == self.topic:
            raise ConnectionError("broker unreachable")
        await super().publish(message)


async def test_a_group_whose_copies_are_not_acknowledged_fails_so_its_offsets_are_not_committed() -> None:
    home, away = _model_on(0), _model_on(1)
    worker = _worker({0}, FailingOn(REKEYED))
    group = _unkeyed([Traffic(10, 9, model=home).batch(50)], [0]) + _unkeyed([Traffic(10, 10, model=away).batch(50)],
                                                                              [0])
    deliveries: list[Any] = []

    async def keep(d: list[Any]) -> None:
        deliveries.extend(d)

    await deliver_group(topic=topics.PREDICTIONS, consumer="t", events=group, handle=keep, publisher=worker.publisher,
                        decode=decode_batch)
    with pytest.raises(ConnectionError):
        await worker.on_predictions(deliveries)
    assert worker.counters["batches"] == 1  # the batch at home was windowed all the same

    worker.publisher = publisher = Collecting()
    await worker.on_predictions(deliveries)  # handed over again: the offsets were not committed
    assert worker.counters["batches"] == 1 and len(publisher.on(REKEYED)) == 1  # counted once, forwarded now


async def test_a_message_on_the_rekeyed_topic_that_is_no_copy_is_dead_lettered_not_windowed() -> None:
    publisher = Collecting()
    worker = _worker({0}, publisher)
    raw = orjson.dumps(Traffic(10, 11, model=_model_on(0)).batch(50).to_wire())
    await _consume_copies(worker, [OutgoingMessage(REKEYED, raw, key="x", partition=0)], itertools.count(5))
    [dead] = publisher.on(topics.dead_letter_topic(topics.PREDICTIONS))
    reason = dict(header_pairs(dead.headers))["dlq_reason"]
    assert b"not a forwarded copy" in reason and f"{REKEYED} partition 0 offset 5".encode() in reason
    assert worker.counters["batches"] == 0
