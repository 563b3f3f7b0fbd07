"""Composition root of the telemetry service: one monitor state per model version, per batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.telemetry.config import TelemetrySettings
from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.service_layer.monitor import MonitorState, Outputs, WindowConfig, ingest_many
from services.telemetry.service_layer.wire import DecodedBatch, alert_record, window_stats_record
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.envelope import OutgoingMessage, build_message
from shared.messaging.publisher import Publisher, publish_all

log = get_logger(__name__)
SOURCE = "urn:bdguard:telemetry"
T = TypeVar("T")


class StateStore(Protocol):
    """Where the monitor keeps its state per model version; ``put`` returns once the write is durable
    enough for the input offset to be committed after it, ``load`` brings the store up to date after a
    restart or a rebalance (see adapters/kafka_state.py)."""

    async def load(self) -> None: ...

    def mark_stale(self) -> None: ...

    def get(self, key: str) -> object | None: ...

    async def put(self, key: str, value: object, partition: int) -> None: ...


class InMemoryStore:
    """A process-local store (in-process runs and tests of the service layer)."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    async def load(self) -> None:
        return None

    def mark_stale(self) -> None:
        return None

    def get(self, key: str) -> object | None:
        return self.data.get(key)

    async def put(self, key: str, value: object, partition: int) -> None:
        self.data[key] = value


def window_config(settings: TelemetrySettings) -> WindowConfig:
    return WindowConfig(window_s=settings.window_s, step_s=settings.step_s, lateness_s=settings.lateness_s,
                        baseline_size=settings.baseline_size, early_eval_s=settings.early_eval_s,
                        baseline_refresh_s=settings.baseline_refresh_s, min_judged=settings.min_judged,
                        pattern_capacity=settings.pattern_capacity, max_open_windows=settings.max_open_windows)


@dataclass
class TelemetryService:
    cfg: WindowConfig
    states: StateStore
    baselines: StateStore
    publisher: Publisher
    clock: Callable[[], float] = time.time
    counters: dict[str, int] = field(default_factory=lambda: {"batches": 0, "predictions": 0, "alerts": 0})

    async def on_batch(self, delivery: Delivery) -> None:
        await self.on_batches([delivery])

    async def on_batches(self, deliveries: list[Delivery]) -> None:
        """Batches in arrival order, grouped per model version: one state update per version per call.

        All versions' outputs go out first and are acknowledged together (one round trip), then all
        states are written, again acknowledged together: a crash in between repeats outputs (same event
        ids) instead of losing a closed window, and the input offsets are acked only after both.
        """
        await self.states.load()
        await self.baselines.load()
        groups: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            assert isinstance(delivery.record, DecodedBatch)
            groups.setdefault(_state_key(delivery.record.batch), []).append(delivery)
        try:
            updates = [u for key, group in groups.items() if (u := self._ingest(key, group)) is not None]
            await publish_all(self.publisher, [m for u in updates for m in self._messages(u)])
            await asyncio.gather(*(self._save(u) for u in updates))
        except BaseException:
            # the state in memory may be ahead of what reached the topic (updated, its outputs not
            # sent): the next call starts again from the durable state
            self.states.mark_stale()
            self.baselines.mark_stale()
            raise
        for u in updates:
            self.counters["batches"] += len(u.group)
            self.counters["predictions"] += sum(len(d.record.batch) for d in u.group
                                                if isinstance(d.record, DecodedBatch))

    def _ingest(self, key: str, group: list[Delivery]) -> _Update | None:
        batches = [d.record.batch for d in group if isinstance(d.record, DecodedBatch)]
        state = _revive(self.states.get(key), MonitorState) or MonitorState(batches[0].model, batches[0].version)
        if state.baseline is None and state.builder is None:  # after a restart the state comes back without it
            # (a state still building its baseline keeps building: the baseline topic may be ahead of a
            # state read back from an older record, and mixing the two would count twice)
            state.baseline = _revive(self.baselines.get(key), Baseline)
        out = ingest_many(state, [(b, d.partition, d.offset) for b, d in zip(batches, group, strict=True)],
                          self.clock(), self.cfg)
        return None if out.skipped_duplicate else _Update(key, state, out, group)

    async def _save(self, u: _Update) -> None:
        partition = u.group[-1].partition
        if u.out.baseline_changed and u.state.baseline is not None:
            # written when learnt (and on each refresh), not per batch
            await self.baselines.put(u.key, u.state.baseline, partition)
        await self.states.put(u.key, u.state, partition)  # one write per group: state and offsets together

    def _messages(self, u: _Update) -> list[OutgoingMessage]:
        """Alerts first (responders wait for them), then the closed windows' statistics."""
        state, correlation_id = u.state, u.group[-1].attrs.id
        messages = []
        for alert in u.out.alerts:
            self.counters["alerts"] += 1
            log.warning("telemetry alert", kind=alert.kind, severity=alert.severity_hint, model=alert.model,
                        version=alert.version, target_class=alert.target_class)
            messages.append(build_message(alert_record(alert), source=SOURCE, correlation_id=correlation_id,
                                          event_id=alert.alert_id))
        for closed in u.out.closed:
            record = window_stats_record(state.model, state.version, self.cfg.kind, closed)
            messages.append(build_message(record, source=SOURCE, correlation_id=correlation_id,
                                          event_id=f"ws-{state.model}-{state.version}-{closed.start}"))
        return messages


@dataclass(frozen=True)
class _Update:
    """One model version's share of a group: its new state and what it has to announce."""

    key: str
    state: MonitorState
    out: Outputs
    group: list[Delivery]


def _state_key(batch: PredictionBatch) -> str:
    """``model|version`` with ``|`` and ``\\`` escaped inside the names, so ``a|b``/``c`` and ``a``/``b|c``
    do not share one state (names without either character keep the key they always had)."""
    def escaped(name: str) -> str:
        return name.replace("\\", "\\\\").replace("|", "\\|")

    return f"{escaped(batch.model)}|{escaped(batch.version)}"


def _revive(value: object, cls: type[T]) -> T | None:
    """Values read back from the state topic are already objects; dicts are accepted too."""
    if value is None or isinstance(value, cls):
        return value
    return cls.from_dict(value)  # type: ignore[attr-defined,no-any-return]


def bootstrap(settings: TelemetrySettings, publisher: Publisher,
              states: StateStore | None = None, baselines: StateStore | None = None) -> TelemetryService:
    return TelemetryService(window_config(settings), InMemoryStore() if states is None else states,
                            InMemoryStore() if baselines is None else baselines, publisher)
