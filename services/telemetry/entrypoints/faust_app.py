"""faust agent of the telemetry service: prediction batches → window stats and alerts."""

from __future__ import annotations

from typing import Any

import faust

from services.telemetry.adapters.state_codec import register_codecs
from services.telemetry.bootstrap import TelemetryService, bootstrap
from services.telemetry.config import TelemetrySettings
from services.telemetry.service_layer.wire import decode_batch
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: TelemetrySettings) -> faust.App:
    return build(settings)[0]


def build(settings: TelemetrySettings, app_id: str = "bdguard-telemetry") -> tuple[faust.App, TelemetryService]:
    """The app and the service behind its agent (benchmarks read the service's counters)."""
    # batches are tens of KB each: fetch many per round trip instead of faust's 1 MiB per partition
    app = create_faust_app(app_id, settings, consumer_max_fetch_size=16 * 1024**2)
    # state per model version, changelogged: a restarted worker recovers it, and batch offsets stored
    # beside the windows keep a redelivered batch from being counted twice
    state_codec, baseline_codec = register_codecs()
    monitor_state_by_model_version = _table(app, "monitor_state_by_model_version", state_codec)
    baseline_by_model_version = _table(app, "baseline_by_model_version", baseline_codec)
    service = bootstrap(settings, FaustPublisher(app), monitor_state_by_model_version, baseline_by_model_version)
    register_agent(app, topic=topics.PREDICTIONS, name="track_predictions", handle=service.on_batch,
                   publisher=service.publisher, decode=decode_batch)
    return app, service


def _table(app: faust.App, name: str, codec: str) -> Any:
    table: Any = app.Table(name, key_type=str, default=None)
    # faust derives the codec from a Record value_type; ours are plain objects with their own codec.
    # The store and the changelog topic are created lazily, so setting it here reaches both.
    table.value_serializer = codec
    return table
