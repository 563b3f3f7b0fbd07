"""faust agent of the telemetry service: prediction batches → window stats and alerts."""

from __future__ import annotations

import faust

from services.telemetry.adapters.faust_tables import changelogged_table
from services.telemetry.adapters.state_codec import register_codecs
from services.telemetry.bootstrap import TelemetryService, bootstrap
from services.telemetry.config import TelemetrySettings
from services.telemetry.service_layer.wire import decode_batch
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_group_agent


def create_app(settings: TelemetrySettings) -> faust.App:
    return build(settings)[0]


def build(settings: TelemetrySettings, app_id: str = "bdguard-telemetry") -> tuple[faust.App, TelemetryService]:
    """The app and the service behind its agent (benchmarks read the service's counters)."""
    # batches are tens of KB each: fetch many per round trip instead of faust's 1 MiB per partition
    app = create_faust_app(app_id, settings, consumer_max_fetch_size=16 * 1024**2)
    # state per model version, changelogged: a restarted worker recovers it, and batch offsets stored
    # beside the windows keep a redelivered batch from being counted twice
    state_codec, baseline_codec = register_codecs()
    monitor_state_by_model_version = changelogged_table(app, "monitor_state_by_model_version", state_codec)
    baseline_by_model_version = changelogged_table(app, "baseline_by_model_version", baseline_codec)
    service = bootstrap(settings, FaustPublisher(app), monitor_state_by_model_version, baseline_by_model_version)
    # a group of batches per update: under load the window math runs once per model version per group
    register_group_agent(app, topic=topics.PREDICTIONS, name="track_predictions", handle=service.on_batches,
                         publisher=service.publisher, decode=decode_batch, max_events=settings.group_max_batches,
                         within_s=settings.group_within_s)
    return app, service

