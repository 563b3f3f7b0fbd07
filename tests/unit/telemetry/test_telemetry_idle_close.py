"""Windows of a model version gone quiet close on the idle sweep, once, owned partitions only, exactly
as a batch would close them, also when a worker dies between publishing and writing its state."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import structlog

from services.telemetry.bootstrap import TelemetryService
from services.telemetry.config import TelemetrySettings
from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.service_layer import service as service_module
from services.telemetry.service_layer.idle import IdleTracker
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig
from services.telemetry.service_layer.wire import DecodedBatch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.validation import decode_record
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import OutgoingMessage

CFG = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=2.0, baseline_size=1_000, early_eval_s=0.0)
T0 = 1_700_000_000.0  # event time of the first prediction; the worker's clock is unrelated to it
IDLE_S = 10.0
LAST = T0 + 20  # the window the quiet model version leaves open: 500 predictions, drifted
DRIFT = {"class_distribution_drift", "confidence_drop"}


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


class Collecting:
    """The output topics: every message published, in order."""

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []

    async def publish(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def records(self, topic: str) -> list[tuple[str, dict[str, Any]]]:
        """(event id, body) of each message on ``topic``; each body validated against its schema."""
        found = []
        for m in self.messages:
            if m.topic == topic:
                decode_record(topic, m.value)
                found.append((dict(m.headers)["ce_id"].decode(), orjson.loads(m.value)))
        return found


class DurableStore:
    """The state store as the Kafka one behaves: ``put`` is durable (a serialised copy), the objects in
    memory are working copies, and after ``mark_stale`` the next ``load`` brings back the durable ones.
    ``crash_after(n)``: the write after the next ``n`` fails, as a worker killed before it would."""

    def __init__(self, encode: Callable[[Any], dict[str, Any]], decode: Callable[[dict[str, Any]], Any]) -> None:
        self.encode, self.decode = encode, decode
        self.durable: dict[str, tuple[int, bytes]] = {}
        self.data: dict[str, object] = {}
        self.stale = False
        self._writes_left: int | None = None

    def crash_after(self, writes: int) -> None:
        self._writes_left = writes

    async def load(self) -> None:
        if self.stale:
            self.data = {key: self.decode(orjson.loads(raw)) for key, (_, raw) in self.durable.items()}
            self.stale = False

    def mark_stale(self) -> None:
        self.stale = True

    def get(self, key: str) -> object | None:
        return self.data.get(key)

    async def put(self, key: str, value: object, partition: int) -> None:
        if self._writes_left is not None:
            if self._writes_left == 0:
                self._writes_left = None
                raise ConnectionError("worker killed before the state write")
            self._writes_left -= 1
        self.data[key] = value
        self.durable[key] = (partition, orjson.dumps(self.encode(value), option=orjson.OPT_SERIALIZE_NUMPY))

    def stored_keys(self) -> list[str]:
        return list(self.data)

    def keys_on(self, partitions: Any) -> dict[str, int]:
        return {key: p for key, (p, _) in self.durable.items() if p in partitions}


def _stores() -> tuple[DurableStore, DurableStore]:
    return (DurableStore(MonitorState.to_dict, MonitorState.from_dict),
            DurableStore(Baseline.to_dict, Baseline.from_dict))


async def _worker(states: DurableStore, baselines: DurableStore, publisher: Collecting, clock: Clock,
                  owned: set[int] | None = None) -> TelemetryService:
    """A (re)started worker on the same topics: a fresh service that owns ``owned`` (default {0})."""
    service = TelemetryService(CFG, states, baselines, publisher, clock=clock, idle=IdleTracker(IDLE_S))
    await service.partitions_assigned({0} if owned is None else owned)
    return service


def _quiet_traffic(model: str = "m", seed: int = 21) -> list[PredictionBatch]:
    """1,000 baseline predictions over [T0, T0 + 10), a full clean window, then half a drifted one."""
    traffic = Traffic(10, seed=seed, model=model, start=T0)
    shifted = np.roll(traffic.priors, 3) * 0.5 + np.full(10, 0.05)
    return ([traffic.batch(500) for _ in range(4)]
            + [traffic.batch(500, priors=shifted / shifted.sum(), margin=3.0)])


def _at(start: float, n: int, model: str = "m", seed: int = 5) -> PredictionBatch:
    return Traffic(10, seed=seed, model=model, start=start).batch(n)


def _deliveries(batches: list[PredictionBatch], partition: int = 0, offset: int = 0) -> list[Delivery]:
    def attrs(i: int) -> CloudEventAttributes:
        return CloudEventAttributes.for_topic(topics.PREDICTIONS, source="urn:test", event_id=f"e{partition}-{i}",
                                              subject=f"{batches[0].model}/1")

    return [Delivery(DecodedBatch(b), attrs(offset + i), topics.PREDICTIONS, partition, offset + i)
            for i, b in enumerate(batches)]


def _windows(publisher: Collecting, model: str = "m") -> list[tuple[str, dict[str, Any]]]:
    return [(i, body) for i, body in publisher.records(topics.WINDOW_STATS) if body["model"] == model]


def _alerts_of(publisher: Collecting, start: float) -> list[tuple[str, dict[str, Any]]]:
    return [(i, body) for i, body in publisher.records(topics.ALERTS) if body["window_start"] == start]


def _without_detection_time(alerts: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(i, {k: v for k, v in body.items() if k != "detected_at"}) for i, body in alerts]


async def test_a_quiet_model_versions_last_window_closes_after_idle_close_s_and_is_published_once() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    assert [body["window_start"] for _, body in _windows(publisher)] == [T0 + 10]

    clock.now += IDLE_S - 0.5
    assert await service.close_idle_windows() == 0  # not quiet long enough yet
    clock.now += 0.5
    assert await service.close_idle_windows() == 1
    for _ in range(3):  # later sweeps find nothing left to close
        clock.now += 60
        assert await service.close_idle_windows() == 0

    windows = _windows(publisher)
    assert [body["window_start"] for _, body in windows] == [T0 + 10, LAST]
    assert windows[-1][1]["count"] == 500 and windows[-1][1]["late_dropped"] == 0
    drift = _alerts_of(publisher, LAST)
    assert {body["kind"] for _, body in drift} & DRIFT, "the drifted half window raised no drift alert"
    ids = [i for i, _ in publisher.records(topics.WINDOW_STATS) + publisher.records(topics.ALERTS)]
    assert len(ids) == len(set(ids))  # everything published once
    assert service.counters["idle_closed"] == 1
    state = states.get("m|1")
    assert isinstance(state, MonitorState) and state.windows == {}
    assert state.watermark == LAST + CFG.window_s + CFG.lateness_s  # only as far as closing it needed


async def test_an_idle_close_publishes_what_a_batch_moving_the_watermark_would_have() -> None:
    idle, moved = Collecting(), Collecting()
    clock, (states, baselines) = Clock(), _stores()
    service = await _worker(states, baselines, idle, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    clock.now += IDLE_S
    assert await service.close_idle_windows() == 1

    control_states, control_baselines = _stores()
    control = await _worker(control_states, control_baselines, moved, Clock())
    await control.on_batches(_deliveries(_quiet_traffic()))
    await control.on_batches(_deliveries([_at(T0 + 40, 100)], offset=5))  # the watermark passes LAST's end

    assert _windows(idle)[-1] == _windows(moved)[1]  # same event id, same record
    assert _without_detection_time(_alerts_of(idle, LAST)) == _without_detection_time(_alerts_of(moved, LAST))


async def test_a_sweep_repeated_after_a_crash_before_the_state_write_publishes_the_same_ids_and_counts() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    clock.now += IDLE_S
    states.crash_after(1)  # the advanced watermark is written; the state after publishing is not
    with pytest.raises(ConnectionError):
        await service.close_idle_windows()
    first = _windows(publisher)[-1]
    first_alerts = _without_detection_time(_alerts_of(publisher, LAST))
    assert first[1]["window_start"] == LAST and first_alerts

    restarted = await _worker(states, baselines, publisher, clock)
    clock.now += 1.0  # the restarted worker has seen no silence yet: the durable watermark closes it
    assert await restarted.close_idle_windows() == 1
    assert _windows(publisher)[-1] == first  # the same event, the same counts
    assert _without_detection_time(_alerts_of(publisher, LAST)) == first_alerts * 2
    clock.now += 60
    assert await restarted.close_idle_windows() == 0


async def test_a_batch_arriving_after_that_crash_closes_the_same_window_first_and_counts_its_late_predictions() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    clock.now += IDLE_S
    states.crash_after(1)
    with pytest.raises(ConnectionError):
        await service.close_idle_windows()
    first = _windows(publisher)[-1]

    # the server resumes: 100 predictions for the window already published, then new traffic
    restarted = await _worker(states, baselines, publisher, clock)
    clock.now += 1.0
    await restarted.on_batches(_deliveries([_at(LAST + 5, 100), _at(T0 + 40, 500, seed=6)], offset=5))
    assert _windows(publisher)[-1] == first  # not 600: the window was closed before they came
    assert restarted.counters["late_dropped"] == 100

    clock.now += IDLE_S
    assert await restarted.close_idle_windows() == 1
    resumed = _windows(publisher)[-1][1]
    assert (resumed["window_start"], resumed["count"], resumed["late_dropped"]) == (T0 + 40, 500, 100)


async def test_a_redelivered_group_after_a_crash_before_the_state_write_publishes_the_same_ids_and_counts() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()[:4]))
    resumed = _deliveries([_at(T0 + 22, 300, seed=8), _at(LAST + 5, 50, seed=9), _at(T0 + 35, 100, seed=10)],
                          offset=4)
    states.crash_after(0)
    with pytest.raises(ConnectionError):
        await service.on_batches(resumed)
    first = _windows(publisher)

    restarted = await _worker(states, baselines, publisher, clock)
    await restarted.on_batches(resumed)  # the input offsets were never committed: the same group again
    again = _windows(publisher)[len(first):]
    assert again == first[-len(again):] and again


async def test_only_keys_on_partitions_this_worker_owns_are_swept() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock, owned={1})
    await service.on_batches(_deliveries(_quiet_traffic("a"), partition=0))
    await service.on_batches(_deliveries(_quiet_traffic("b", seed=22), partition=1))
    clock.now += IDLE_S
    assert await service.close_idle_windows() == 1
    assert [b["window_start"] for _, b in _windows(publisher, "b")] == [T0 + 10, LAST]
    assert [b["window_start"] for _, b in _windows(publisher, "a")] == [T0 + 10]  # partition 0 is not ours

    await service.partitions_revoked({1})
    clock.now += 60
    assert await service.close_idle_windows() == 0  # nothing owned during a rebalance

    await service.partitions_assigned({0, 1})
    assert await service.close_idle_windows() == 0  # quiet time counts from the assignment, not before it
    clock.now += IDLE_S
    assert await service.close_idle_windows() == 1
    assert [b["window_start"] for _, b in _windows(publisher, "a")] == [T0 + 10, LAST]


async def test_predictions_for_a_closed_window_are_counted_and_reported_by_the_next_closed_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    late = _at(T0 + 12, 40, seed=30)  # window T0 + 10 was published already
    with structlog.testing.capture_logs() as logs:
        # a logger of its own: one configured and cached by an earlier test would not be captured
        monkeypatch.setattr(service_module, "log", structlog.get_logger(service_module.__name__))
        await service.on_batches(_deliveries([late, _at(T0 + 26, 30, seed=31)], offset=5))
    assert service.counters["late_dropped"] == 40
    assert [(e["model"], e["version"], e["late_dropped"]) for e in logs
            if e["event"] == "predictions dropped"] == [("m", "1", 40)]
    await service.on_batches(_deliveries([_at(T0 + 31, 700, seed=32)], offset=7))  # closes LAST
    await service.on_batches(_deliveries([_at(T0 + 45, 100, seed=33)], offset=8))  # closes T0 + 30
    reported = [(b["window_start"], b["count"], b["late_dropped"]) for _, b in _windows(publisher)]
    assert reported == [(T0 + 10, 1000, 0), (LAST, 530, 40), (T0 + 30, 700, 0)]


def test_a_prediction_late_for_one_hopping_window_but_counted_in_a_later_one_is_not_dropped() -> None:
    from services.telemetry.service_layer.monitor import ingest

    cfg = dataclasses.replace(CFG, step_s=5.0, lateness_s=0.0)
    state = MonitorState("m", "1")
    ingest(state, _at(T0, 1000), 0, 0, now=0.0, cfg=cfg)  # the baseline
    ingest(state, _at(T0 + 10, 1000), 0, 1, now=0.0, cfg=cfg)  # watermark T0 + 19.99: [T0+5, T0+15) closed
    out = ingest(state, _at(T0 + 12, 100), 0, 2, now=0.0, cfg=cfg)  # in [T0+5, T0+15) and [T0+10, T0+20)
    assert out.late_dropped == 0 and state.windows[T0 + 10].count == 1100
    out = ingest(state, _at(T0 + 9, 50), 0, 3, now=0.0, cfg=cfg)  # [T0, T0+10) and [T0+5, T0+15): both closed
    assert out.late_dropped == 50 and state.late_dropped == 50


class Gated(Collecting):
    """Holds every publication until released, so that a second caller can try to get in between."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def publish(self, message: OutgoingMessage) -> None:
        self.entered.set()
        await self.release.wait()
        await super().publish(message)


async def test_a_batch_waits_for_a_sweep_in_flight_instead_of_interleaving_with_it() -> None:
    clock, publisher, (states, baselines) = Clock(), Collecting(), _stores()
    service = await _worker(states, baselines, publisher, clock)
    await service.on_batches(_deliveries(_quiet_traffic()))
    gated = Gated()
    service.publisher = gated
    clock.now += IDLE_S
    sweep = asyncio.create_task(service.close_idle_windows())
    await gated.entered.wait()  # the sweep is publishing the window it closed
    batch = asyncio.create_task(service.on_batches(_deliveries([_at(LAST + 6, 50, seed=40)], offset=5)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not batch.done() and gated.messages == []
    gated.release.set()
    assert await sweep == 1
    await batch
    assert service.counters["late_dropped"] == 50  # it came after the close, so it was late
    assert [b["count"] for _, b in _windows(gated)] == [500]


@pytest.mark.parametrize(("lateness", "setting", "after"), [(2.0, None, 10.0), (4.0, None, 20.0), (0.0, None, 10.0),
                                                            (2.0, 1.5, 1.5), (2.0, 0.0, 0.0)])
def test_idle_close_defaults_to_a_few_multiples_of_the_lateness(lateness: float, setting: float | None,
                                                                 after: float) -> None:
    settings = TelemetrySettings(lateness_s=lateness, idle_close_s=setting)
    assert settings.idle_close_after_s == after
    assert IdleTracker(settings.idle_close_after_s).enabled == (after > 0)
    assert 0.1 <= settings.idle_sweep_s <= 5.0
