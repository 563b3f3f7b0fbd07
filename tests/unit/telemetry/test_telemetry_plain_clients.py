"""Traffic from producers written against the schema alone (not the bdguard client library)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np
import orjson
import pytest

from services.telemetry.bootstrap import InMemoryStore, TelemetryService
from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig, ingest, ingest_many
from services.telemetry.service_layer.wire import decode_batch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.validation import ContractViolation
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import OutgoingMessage

BATCH = {"model": "digits", "version": "3", "server_id": "inf-1", "batch_id": "9f1c", "n_classes": 10,
         "ids": ["p1", "p2"], "ts": [1763900000.0, 1763900000.1], "pred": [3, 7], "conf": [0.98, 0.91],
         "entropy": [0.08, 0.31], "sig": ["", ""]}
SINGLE = {"model": "digits", "version": "3", "prediction_id": "req-17", "ts": 1763900000.1,
          "probabilities": [0.01, 0.97, 0.02]}
CFG = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=1_000, early_eval_s=0.0)


def _decode(value: dict[str, Any]) -> PredictionBatch:
    return decode_batch(topics.PREDICTIONS, json.dumps(value).encode()).batch  # json: ints beyond 64 bits


@pytest.mark.parametrize(("change", "named"), [
    ({"ts": [None, 1763900000.1]}, "ts"), ({"ts": ["1763900000", "1763900000.1"]}, "ts"),
    ({"ts": [[1763900000.0], [1763900000.1]]}, "ts"), ({"entropy": [None, 0.3]}, "entropy"),
    ({"entropy": [-5.0, 0.3]}, "entropy"), ({"pred": [3.7, 7]}, "pred"), ({"pred": [True, 7]}, "pred"),
    ({"pred": [2**64 + 1, 7]}, "pred"), ({"pred": [2**63, 7]}, "pred"), ({"n_classes": 10**12}, "n_classes"),
    ({"n_classes": "10"}, "n_classes"), ({"n_classes": 10.5}, "n_classes"), ({"version": None}, "version"),
    ({"model": ""}, "model"), ({"model": {"name": "digits"}}, "model"), ({"batch_id": ""}, "batch_id"),
    ({"strip": [0.1, "x"]}, "strip"),
])
def test_a_batch_breaking_the_schema_is_a_contract_violation_naming_the_field(
        change: dict[str, Any], named: str) -> None:
    with pytest.raises(ContractViolation, match=named):
        _decode({**BATCH, **change})


@pytest.mark.parametrize("change", [{"version": None}, {"model": ""}, {"prediction_id": ""},
                                    {"model": 7}, {"version": ["3"]}])
def test_a_single_prediction_without_a_proper_model_version_or_id_is_a_contract_violation(
        change: dict[str, Any]) -> None:
    with pytest.raises(ContractViolation, match=next(iter(change))):
        _decode({**SINGLE, **change})


def test_integral_floats_are_integers_as_json_schema_has_it() -> None:
    batch = _decode({**BATCH, "pred": [3.0, 7.0], "n_classes": 10.0})
    assert batch.pred.tolist() == [3, 7] and batch.pred.dtype == np.int64 and batch.n_classes == 10
    single = _decode({"model": "digits", "version": "3", "prediction_id": "r", "ts": 1763900000.0,
                      "predicted_class": 1.0, "confidence": 0.9, "n_classes": 10.0})
    assert single.pred.tolist() == [1] and single.n_classes == 10


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e9])
def test_event_times_in_milliseconds_microseconds_or_nanoseconds_are_read_as_seconds(scale: float) -> None:
    # plain clients send epoch milliseconds (Java, JavaScript) or nanoseconds (Go) as often as seconds
    now = time.time()
    single = _decode({**SINGLE, "ts": now * scale})
    assert single.ts.tolist() == pytest.approx([now], abs=1e-3)
    batch = _decode({**BATCH, "ts": [now - 1.0, (now - 0.5) * scale]})  # even mixed within one batch
    assert batch.ts.tolist() == pytest.approx([now - 1.0, now - 0.5], abs=1e-3)


def test_event_times_far_ahead_of_the_clock_are_dead_lettered_saying_so() -> None:
    # one such prediction would carry the watermark weeks ahead and every later window would be "too late"
    ahead = time.time() + 30 * 86400.0
    for ts in (ahead, ahead * 1000.0):
        with pytest.raises(ContractViolation, match=r"ts.*future"):
            _decode({**SINGLE, "ts": ts})
        with pytest.raises(ContractViolation, match=r"ts.*future"):
            _decode({**BATCH, "ts": [time.time(), ts]})
    assert len(_decode({**SINGLE, "ts": time.time() + 5.0})) == 1  # a few seconds of clock skew is fine


def test_batches_that_reuse_a_batch_id_are_all_counted() -> None:
    # a plain producer copying the schema example, or numbering its batches from 1 after each restart
    traffic, state = Traffic(10, seed=31), MonitorState("m", "1")
    for offset in range(3):
        ingest(state, dataclasses.replace(traffic.batch(200), batch_id="9f1c"), 0, offset, now=0.0, cfg=CFG)
    assert state.builder is not None and state.builder.stats.count == 600


def test_single_predictions_of_two_servers_numbering_their_requests_alike_are_all_counted() -> None:
    items, offset = [], 0
    for i in range(150):
        for server in ("inf-a", "inf-b"):
            offset += 1
            value = {**SINGLE, "prediction_id": f"req-{i}", "server_id": server, "ts": 1763900000.0 + i * 0.01}
            items.append((_decode(value), 0, offset))
    state = MonitorState("digits", "3")
    ingest_many(state, items, now=0.0, cfg=CFG)
    ingest_many(state, [(_decode({**SINGLE, "prediction_id": "req-149", "server_id": "inf-a",
                                  "ts": 1763900000.0 + 149 * 0.01}), 0, offset + 1)], now=0.0, cfg=CFG)  # a retry
    assert state.builder is not None and state.builder.stats.count == 300


def test_a_batch_spread_over_many_windows_only_pays_for_the_windows_it_keeps() -> None:
    cfg = dataclasses.replace(CFG, baseline_size=100)
    traffic, state = Traffic(10, seed=32, spacing_s=60.0), MonitorState("m", "1")
    ingest(state, traffic.batch(100), 0, 0, now=0.0, cfg=cfg)
    wide = traffic.batch(30_000)  # a replayed backlog: one prediction per minute, each in its own window
    began = time.perf_counter()
    out = ingest(state, wide, 0, 1, now=0.0, cfg=cfg)
    assert time.perf_counter() - began < 3.0  # was ~10 s: every window was built, then thrown away
    newest = np.floor(wide.ts[-cfg.max_open_windows:] / cfg.step_s) * cfg.step_s
    windows = [(w.start, w.stats) for w in out.closed] + sorted(state.windows.items())
    assert [s for s, _ in windows] == newest.tolist() and {w.count for _, w in windows} == {1}


class Collecting:
    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []

    async def publish(self, message: OutgoingMessage) -> None:
        self.messages.append(message)


async def test_model_and_version_names_holding_the_key_separator_keep_separate_states() -> None:
    states = InMemoryStore()
    service = TelemetryService(CFG, states, InMemoryStore(), Collecting())
    deliveries = []
    for offset, (model, version) in enumerate([("a|b", "c"), ("a", "b|c")]):
        batch = dataclasses.replace(Traffic(10, seed=33, model=model, version=version).batch(300),
                                    batch_id=f"b{offset}")
        attrs = CloudEventAttributes.for_topic(topics.PREDICTIONS, source="urn:test", event_id=f"e{offset}",
                                               subject=f"{model}/{version}")
        deliveries.append(Delivery(decode_batch(topics.PREDICTIONS, orjson.dumps(batch.to_wire())), attrs,
                                   topics.PREDICTIONS, 0, offset))
    await service.on_batches(deliveries)
    kept = [(s.model, s.version, s.builder.stats.count) for s in states.data.values()  # type: ignore[attr-defined]
            if isinstance(s, MonitorState) and s.builder is not None]
    assert sorted(kept) == [("a", "b|c", 300), ("a|b", "c", 300)]
