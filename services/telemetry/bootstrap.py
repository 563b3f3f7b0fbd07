"""Composition root of the telemetry service: one monitor state per model version, per batch."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TypeVar

from services.telemetry.config import TelemetrySettings
from services.telemetry.domain.baseline import Baseline
from services.telemetry.service_layer.monitor import MonitorState, Outputs, WindowConfig, ingest
from services.telemetry.service_layer.wire import DecodedBatch, alert_record, window_stats_record
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import build_message
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
SOURCE = "urn:bdguard:telemetry"
T = TypeVar("T")


def window_config(settings: TelemetrySettings) -> WindowConfig:
    return WindowConfig(window_s=settings.window_s, step_s=settings.step_s, lateness_s=settings.lateness_s,
                        baseline_size=settings.baseline_size, early_eval_s=settings.early_eval_s,
                        baseline_refresh_s=settings.baseline_refresh_s, min_judged=settings.min_judged,
                        pattern_capacity=settings.pattern_capacity, max_open_windows=settings.max_open_windows)


@dataclass
class TelemetryService:
    cfg: WindowConfig
    states: MutableMapping[str, MonitorState]
    baselines: MutableMapping[str, Baseline]
    publisher: Publisher
    clock: Callable[[], float] = time.time
    counters: dict[str, int] = field(default_factory=lambda: {"batches": 0, "predictions": 0, "alerts": 0})

    async def on_batch(self, delivery: Delivery) -> None:
        assert isinstance(delivery.record, DecodedBatch)
        batch = delivery.record.batch
        key = f"{batch.model}|{batch.version}"
        state = _revive(self.states.get(key), MonitorState) or MonitorState(batch.model, batch.version)
        if state.baseline is None and state.builder is None:  # after a restart the state comes back without it
            # (a state still building its baseline keeps building: the baseline table may be ahead of a
            # state recovered from an older changelog entry, and mixing the two would count twice)
            state.baseline = _revive(self.baselines.get(key), Baseline)
        out = ingest(state, batch, delivery.partition, delivery.offset, self.clock(), self.cfg)
        if out.skipped_duplicate:
            return
        if out.baseline_changed and state.baseline is not None:
            self.baselines[key] = state.baseline  # written when learnt (and on each refresh), not per batch
        self.states[key] = state  # one changelog write per batch: state and offset move together
        self.counters["batches"] += 1
        self.counters["predictions"] += len(batch)
        await self._publish(state, out, delivery.attrs.id)

    async def _publish(self, state: MonitorState, out: Outputs, correlation_id: str) -> None:
        for closed in out.closed:
            record = window_stats_record(state.model, state.version, self.cfg.kind, closed)
            await self.publisher.publish(build_message(record, source=SOURCE, correlation_id=correlation_id,
                                                       event_id=f"ws-{state.model}-{state.version}-{closed.start}"))
        for alert in out.alerts:
            self.counters["alerts"] += 1
            log.warning("telemetry alert", kind=alert.kind, severity=alert.severity_hint, model=alert.model,
                        version=alert.version, target_class=alert.target_class)
            await self.publisher.publish(build_message(alert_record(alert), source=SOURCE,
                                                       correlation_id=correlation_id, event_id=alert.alert_id))


def _revive(value: object, cls: type[T]) -> T | None:
    """Table values recovered from a changelog arrive as decoded JSON (faust bypasses the codec there)."""
    if value is None or isinstance(value, cls):
        return value
    return cls.from_dict(value)  # type: ignore[attr-defined,no-any-return]


def bootstrap(settings: TelemetrySettings, publisher: Publisher,
              states: MutableMapping[str, MonitorState] | None = None,
              baselines: MutableMapping[str, Baseline] | None = None) -> TelemetryService:
    return TelemetryService(window_config(settings), {} if states is None else states,
                            {} if baselines is None else baselines, publisher)
