"""Telemetry client: record() never blocks or raises, drops are counted, batches are columnar."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import orjson
import pytest

from services.telemetry.client import TelemetryClient, TelemetrySettings
from services.telemetry.domain import PredictionBatch
from services.telemetry.domain.triggers import TriggerLibrary, TriggerPattern

pytestmark = pytest.mark.unit

Headers = list[tuple[str, bytes]]


class FakeSender:
    def __init__(self, *, fail_start: int = 0, fail_send: int = 0) -> None:
        self.fail_start, self.fail_send = fail_start, fail_send
        self.messages: list[tuple[str, bytes, bytes, Headers]] = []

    async def start(self) -> None:
        if self.fail_start > 0:
            self.fail_start -= 1
            raise ConnectionError("broker down")

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        if self.fail_send > 0:
            self.fail_send -= 1
            raise ConnectionError("broker gone")
        self.messages.append((topic, key, value, headers))

    async def stop(self) -> None:
        return None


def _settings(**kw: object) -> TelemetrySettings:
    base: dict[str, object] = {"bootstrap_servers": "127.0.0.1:1", "linger_ms": 20, "batch_size": 100,
                               "reconnect_backoff_s": 0.05, "send_timeout_s": 1.0, "stop_timeout_s": 1.0,
                               "server_id": "srv-1"}
    return TelemetrySettings(**{**base, **kw})  # type: ignore[arg-type]


def _traffic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=n)
    return rng.random((n, 1, 8, 8)), probs


async def _until(cond, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_record_never_blocks_or_raises_with_an_unreachable_broker_and_counts_drops() -> None:
    client = TelemetryClient(_settings(max_buffered=300))
    await client.start()
    x, p = _traffic(10)
    slowest = 0.0
    for _ in range(100):
        t0 = time.perf_counter()
        client.record("m", "1", x, p)
        slowest = max(slowest, time.perf_counter() - t0)
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)  # give the flusher time to fail to connect
    m = client.metrics
    assert slowest < 0.05
    assert (m.buffered, m.dropped, m.sent) == (300, 700, 0)
    assert m.errors >= 1 and not m.connected
    t0 = time.perf_counter()
    await client.stop()
    assert time.perf_counter() - t0 < 5.0


async def test_drop_newest_policy_refuses_incoming_predictions_and_counts_them() -> None:
    client = TelemetryClient(_settings(max_buffered=50, drop_policy="newest"),
                             sender_factory=lambda s: FakeSender(fail_start=10**6))
    x, p = _traffic(20)
    ids = [client.record("m", "1", x, p) for _ in range(5)]
    assert client.metrics.buffered == 40 and client.metrics.dropped == 60
    assert all(len(i) == 20 for i in ids)


async def test_batches_are_columnar_with_cloudevents_headers_and_keyed_by_model() -> None:
    sender = FakeSender()
    client = TelemetryClient(_settings(), sender_factory=lambda s: sender)
    await client.start()
    x, p = _traffic(30)
    for i in range(10):
        client.record("resnet", "7", x, p, ids=[f"r{i}-{j}" for j in range(30)])
    await _until(lambda: client.metrics.sent == 300)
    await client.stop()
    assert len(sender.messages) == 3
    topic, key, value, headers = sender.messages[0]
    assert (topic, key) == ("telemetry.predictions.v1", b"resnet")
    wire = orjson.loads(value)
    batch = PredictionBatch.from_wire(wire)
    assert len(batch) == 100 and batch.n_classes == 4 and wire["strip"] is None
    assert batch.ids[:2] == ["r0-0", "r0-1"] and np.array_equal(batch.pred[:30], p.argmax(axis=1))
    h = dict(headers)
    assert h["ce_id"].decode() == wire["batch_id"] and h["ce_subject"] == b"resnet/7"
    assert h["ce_type"] == b"dev.bdguard.telemetry.predictions.v1" and h["ce_specversion"] == b"1.0"
    assert {"ce_source", "ce_time", "ce_correlationid"} <= h.keys()


async def test_failed_sends_count_errors_and_drops_then_the_client_reconnects() -> None:
    sender = FakeSender(fail_start=2, fail_send=1)
    client = TelemetryClient(_settings(), sender_factory=lambda s: sender)
    await client.start()
    x, p = _traffic(100)
    client.record("m", "1", x, p)
    client.record("m", "1", x, p)
    await _until(lambda: client.metrics.sent == 100)
    await client.stop()
    m = client.metrics
    assert (m.sent, m.dropped) == (100, 100) and m.errors == 3


async def test_strip_guard_and_trigger_library_fill_their_columns_off_the_request_path() -> None:
    mask = np.zeros((1, 8, 8), np.float32)
    mask[:, 4:, 4:] = 1
    lib = TriggerLibrary()
    lib.add(TriggerPattern("nc-3", mask, np.ones((1, 8, 8), np.float32)))
    calls: list[int] = []

    def strip(batch: np.ndarray) -> np.ndarray:
        calls.append(threading.get_ident())
        return np.full(len(batch), 0.25)

    sender = FakeSender()
    client = TelemetryClient(_settings(), sender_factory=lambda s: sender, strip_guard=strip,
                             trigger_library=lib)
    await client.start()
    x, p = _traffic(100)
    x[:10, :, 4:, 4:] = 1.0
    client.record("m", "1", x, p)
    await _until(lambda: client.metrics.sent == 100)
    await client.stop()
    wire = orjson.loads(sender.messages[0][2])
    assert wire["strip"] == [0.25] * 100 and threading.get_ident() not in calls
    assert all(s.endswith("!nc-3") for s in wire["sig"][:10]) and "!" not in "".join(wire["sig"][10:])


async def test_a_failing_strip_guard_costs_the_column_not_the_predictions() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("guard crashed")

    sender = FakeSender()
    client = TelemetryClient(_settings(), sender_factory=lambda s: sender, strip_guard=broken)
    await client.start()
    client.record("m", "1", *_traffic(100))
    await _until(lambda: client.metrics.sent == 100)
    await client.stop()
    assert orjson.loads(sender.messages[0][2])["strip"] is None and client.metrics.errors == 1


def test_record_swallows_bad_inputs_and_counts_an_error() -> None:
    client = TelemetryClient(_settings())
    assert client.record("m", "1", np.zeros((2, 4)), np.zeros(3), ids=["a", "b"]) == ["a", "b"]
    assert client.metrics.errors == 1 and client.metrics.buffered == 0


async def test_record_is_safe_from_many_threads() -> None:
    sender = FakeSender()
    client = TelemetryClient(_settings(batch_size=500), sender_factory=lambda s: sender)
    await client.start()
    x, p = _traffic(10)

    def work() -> None:
        for _ in range(50):
            client.record("m", "1", x, p)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    await _until(lambda: client.metrics.sent == 2000)
    await client.stop()
    ids = [i for msg in sender.messages for i in orjson.loads(msg[2])["ids"]]
    assert len(set(ids)) == 2000


async def test_record_without_inputs_sends_empty_signatures() -> None:
    sender = FakeSender()
    client = TelemetryClient(_settings(), sender_factory=lambda s: sender)
    await client.start()
    client.record("m", "1", None, _traffic(100)[1])
    await _until(lambda: client.metrics.sent == 100)
    await client.stop()
    batch = PredictionBatch.from_wire(orjson.loads(sender.messages[0][2]))
    assert batch.sig == [""] * 100


def test_settings_take_the_bootstrap_servers_from_arguments_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BDGUARD_TELEMETRY_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("BDGUARD_TELEMETRY_BATCH_SIZE", "250")
    assert TelemetrySettings().bootstrap_servers == "broker:9092"
    assert TelemetrySettings().batch_size == 250
    assert TelemetrySettings(bootstrap_servers="127.0.0.1:1").bootstrap_servers == "127.0.0.1:1"
