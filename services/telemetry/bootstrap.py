"""Composition root of the telemetry service: settings, stores and publisher in, the service out."""

from __future__ import annotations

from services.telemetry.adapters.memory_state import InMemoryStore
from services.telemetry.config import TelemetrySettings
from services.telemetry.service_layer.idle import IdleTracker
from services.telemetry.service_layer.monitor import WindowConfig
from services.telemetry.service_layer.rekey import Rekey
from services.telemetry.service_layer.service import StateStore, TelemetryService
from shared.messaging.publisher import Publisher

__all__ = ["InMemoryStore", "Rekey", "StateStore", "TelemetryService", "bootstrap", "window_config"]


def window_config(settings: TelemetrySettings) -> WindowConfig:
    return WindowConfig(window_s=settings.window_s, step_s=settings.step_s, lateness_s=settings.lateness_s,
                        baseline_size=settings.baseline_size, early_eval_s=settings.early_eval_s,
                        baseline_refresh_s=settings.baseline_refresh_s, min_judged=settings.min_judged,
                        pattern_capacity=settings.pattern_capacity, max_open_windows=settings.max_open_windows,
                        campaign_s=settings.campaign_s, inherit_baseline=settings.inherit_baseline)


def bootstrap(settings: TelemetrySettings, publisher: Publisher, states: StateStore | None = None,
              baselines: StateStore | None = None, rekey: Rekey | None = None) -> TelemetryService:
    """``rekey``: where batches off their model's home partition are forwarded (a worker of a group);
    None windows every batch where it arrives (one worker)."""
    return TelemetryService(window_config(settings), InMemoryStore() if states is None else states,
                            InMemoryStore() if baselines is None else baselines, publisher,
                            idle=IdleTracker(settings.idle_close_after_s), rekey=rekey)
