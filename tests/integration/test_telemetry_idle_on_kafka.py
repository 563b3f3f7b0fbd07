"""Idle close on a real broker: a model version that stops sending still gets its last window published."""

from __future__ import annotations

import time
import uuid

import orjson
from aiokafka.structs import ConsumerRecord

from services.telemetry.config import TelemetrySettings
from services.telemetry.entrypoints.faust_app import create_app
from services.telemetry.simulation import Traffic
from shared import topics
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.testing.kafka import collect, produce, running

T0 = 1_700_000_000.0
BOUND_S = 20.0  # idle_close_s 1 s + a 1 s window + sweeps every 0.25 s, with room for a slow machine


def _message(traffic: Traffic, n: int) -> tuple[str, bytes, str]:
    return topics.PREDICTIONS, orjson.dumps(traffic.batch(n).to_wire()), traffic.model


async def _window(bootstrap: str, model: str, start: float, *, read_all_s: float = 0.0) -> list[dict[str, object]]:
    """The window-stats records of ``model`` for the window at ``start``, read with a plain consumer: as
    soon as one is there (up to ``BOUND_S``), or whatever ``read_all_s`` of reading finds."""
    def first(got: list[ConsumerRecord]) -> bool:
        return not read_all_s and any(orjson.loads(r.value)["window_start"] == start for r in got)

    got = await collect(bootstrap, [topics.WINDOW_STATS], keep=lambda r: r.key == model.encode(),
                        wait_s=read_all_s or BOUND_S, until=first)
    return [body for r in got if (body := orjson.loads(r.value))["window_start"] == start]


async def test_the_last_window_of_a_model_version_that_stops_sending_reaches_a_plain_consumer(
        kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    model = f"idle-{uuid.uuid4().hex[:6]}"
    settings = TelemetrySettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, window_s=1.0, step_s=1.0, lateness_s=0.0,
                                 baseline_size=1_000, early_eval_s=0.0, idle_close_s=1.0)
    traffic = Traffic(10, seed=17, model=model, start=T0)  # 100 predictions per 1 s window
    async with running(create_app(settings)):
        # a 1,000-prediction baseline, then windows T0+10 and T0+11 (closed by the batch itself) and
        # half of window T0+12, which only the idle close can publish: nothing comes after it
        await produce(kafka_bootstrap, [_message(traffic, 500), _message(traffic, 500), _message(traffic, 250)])
        stopped = time.monotonic()
        last = await _window(kafka_bootstrap, model, T0 + 12)
        waited = time.monotonic() - stopped
        assert last, f"window T0+12 not published within {BOUND_S} s of the last batch"
        assert last[0]["count"] == 50 and last[0]["late_dropped"] == 0

        # the server resumes: 30 predictions for the window already published, then new traffic
        late = Traffic(10, seed=18, model=model, start=T0 + 12.6)
        resumed = Traffic(10, seed=19, model=model, start=T0 + 20)
        await produce(kafka_bootstrap, [_message(late, 30), _message(resumed, 100)])
        after = await _window(kafka_bootstrap, model, T0 + 20)
        assert after and after[0]["count"] == 100 and after[0]["late_dropped"] == 30

        again = await _window(kafka_bootstrap, model, T0 + 12, read_all_s=3.0)
    assert len(again) == 1, f"window T0+12 published {len(again)} times"
    assert waited < BOUND_S
