"""The telemetry service: batches in, alerts and closed windows out, one monitor state per model
version; a timer's idle sweep closes the windows of the model versions that have gone quiet. Batches that
arrive off their model's home partition are forwarded there first (service_layer/rekey.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.telemetry.domain.baseline import Baseline
from services.telemetry.domain.batch import PredictionBatch
from services.telemetry.service_layer.idle import IdleTracker, close_idle, idle_watermark
from services.telemetry.service_layer.monitor import MonitorState, Outputs, WindowConfig, ingest_many, inherit_baseline
from services.telemetry.service_layer.rekey import Rekey
from services.telemetry.service_layer.wire import DecodedBatch, outgoing
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.publisher import Publisher, publish_all

log = get_logger(__name__)
T = TypeVar("T")


class StateStore(Protocol):
    """Where the monitor keeps its state per model version; ``put`` returns once the write is durable
    enough for the input offset to be committed after it, ``load`` brings the store up to date after a
    restart or a rebalance (see adapters/kafka_state.py), ``keys_on`` names the keys whose latest write
    sits on one of the given input partitions (the idle sweep touches only those it owns)."""

    async def load(self) -> None: ...

    def mark_stale(self) -> None: ...

    def get(self, key: str) -> object | None: ...

    async def put(self, key: str, value: object, partition: int) -> None: ...

    def keys_on(self, partitions: Collection[int]) -> dict[str, int]: ...

    def stored_keys(self) -> list[str]: ...


@dataclass
class TelemetryService:
    """Batches in, alerts and closed windows out; the idle sweep closes the windows of quiet model
    versions. Both run under one lock: they read and write the same states.

    With ``rekey`` (every worker of the faust app: none knows it will stay alone), a model version is
    windowed, and its state written and swept, on its model's home partition only; without it (in-process
    runs, tests), where its batches arrive.
    """

    cfg: WindowConfig
    states: StateStore
    baselines: StateStore
    publisher: Publisher
    clock: Callable[[], float] = time.time
    idle: IdleTracker = field(default_factory=lambda: IdleTracker(0.0))
    rekey: Rekey | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ["batches", "predictions", "alerts", "late_dropped", "idle_closed", "forwarded"], 0))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def on_predictions(self, deliveries: list[Delivery]) -> None:
        """Batches off the predictions topic: those on their model's home partition are windowed here, the
        others forwarded to it (acknowledged by the broker) at the same time; returns once both are done, so
        the input offsets are committed after them. Forwarding takes no lock: it touches no state."""
        local, copies = (deliveries, []) if self.rekey is None else self.rekey.split(deliveries)
        if not copies:  # keyed traffic: no hop, no task
            await self.on_batches(local)
            return
        work = [publish_all(self.publisher, copies), *([self.on_batches(local)] if local else [])]
        done = await asyncio.gather(*work, return_exceptions=True)
        if failed := next((r for r in done if isinstance(r, BaseException)), None):
            raise failed  # both have finished: the delivery path may hand the messages over again one by one
        self.counters["forwarded"] += len(copies)

    async def on_batches(self, deliveries: list[Delivery]) -> None:
        """Batches in arrival order, grouped per model version: one state update per version per call.

        All versions' outputs go out first and are acknowledged together (one round trip), then all
        states are written, again acknowledged together: a crash in between repeats outputs (same event
        ids) instead of losing a closed window, and the input offsets are acked only after both.
        """
        async with self._lock:
            await self._load()
            now, groups = self.clock(), _by_state_key(deliveries)
            async with self._durable_state_on_failure():
                updates = [u for key, group in groups.items() if (u := self._ingest(key, group, now)) is not None]
                await self._announce_then_save(updates)
            for u in updates:
                self.idle.arrived(u.key, now, u.state.watermark)
                self._count(u)

    async def close_idle_windows(self) -> int:
        """Close the due windows of the quiet model versions whose state partition this worker owns
        (see service_layer/idle.py); returns how many windows closed.

        The advanced watermark is written first, and only then are the closed windows published and the
        state written again, as a batch would: a crash anywhere in between leaves a durable watermark that
        closes the same windows with the same counts (late predictions are refused for them), whether the
        next sweep or a resumed batch gets there first.
        """
        if not self.idle.enabled or not self.idle.owned:
            return 0
        async with self._lock:
            await self._load()
            now = self.clock()
            async with self._durable_state_on_failure():
                if not (plans := self._idle_plans(now)):
                    return 0
                await asyncio.gather(*(self.states.put(key, state, p) for key, p, state, moved in plans if moved))
                updates = [_Update(key, state, close_idle(state, now, self.cfg), p,
                                   f"idle-close/{key}/{state.watermark!r}") for key, p, state, _ in plans]
                await self._announce_then_save(updates)
            for u in updates:
                self._count(u)
                log.info("idle windows closed", model=u.state.model, version=u.state.version,
                         windows=[w.start for w in u.out.closed], watermark=u.state.watermark)
            return sum(len(u.out.closed) for u in updates)

    async def partitions_assigned(self, partitions: Collection[int]) -> None:
        """A rebalance gave this worker ``partitions`` of the predictions topic: states are re-read."""
        self.states.mark_stale()
        self.baselines.mark_stale()
        self.idle.assigned(partitions)

    async def partitions_revoked(self, partitions: Collection[int]) -> None:
        """Waits for a sweep in flight, so that its writes land before the partitions move on."""
        async with self._lock:
            self.idle.revoked(partitions)

    def _idle_plans(self, now: float) -> list[tuple[str, int, MonitorState, bool]]:
        """Owned keys with windows to close now: key, state partition, state (its watermark advanced),
        and whether the watermark moved (then it is written before anything is published)."""
        plans = []
        everywhere = self.idle.owned if self.rekey is None else range(self.rekey.partitions)
        for key, written_on in self.states.keys_on(everywhere).items():
            state = self._state(key)
            if state is None or state.baseline is None or not state.windows:
                continue
            if (partition := self._partition_of(state.model, written_on)) not in self.idle.owned:
                continue  # re-keyed: the worker owning the model's home partition closes it
            watermark = idle_watermark(state, self.idle.candidate(key, state, now), self.cfg)
            if watermark is not None:
                plans.append((key, partition, state, watermark > state.watermark))
                state.watermark = watermark
        return plans

    async def _load(self) -> None:
        await self.states.load()
        await self.baselines.load()

    @contextlib.asynccontextmanager
    async def _durable_state_on_failure(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            # the state in memory may be ahead of what reached the topic (updated, its outputs not
            # sent): the next call starts again from the durable state
            self.states.mark_stale()
            self.baselines.mark_stale()
            raise

    async def _announce_then_save(self, updates: list[_Update]) -> None:
        for alert in (a for u in updates for a in u.out.alerts):
            self.counters["alerts"] += 1
            log.warning("telemetry alert", kind=alert.kind, severity=alert.severity_hint, model=alert.model,
                        version=alert.version, target_class=alert.target_class)
        await publish_all(self.publisher, [m for u in updates for m in outgoing(
            u.state.model, u.state.version, self.cfg.kind, u.out, u.correlation_id)])
        await asyncio.gather(*(self._save(u) for u in updates))

    def _state(self, key: str, first: PredictionBatch | None = None) -> MonitorState | None:
        state = _revive(self.states.get(key), MonitorState)
        if state is None and first is not None:
            state = MonitorState(first.model, first.version)
            if self.cfg.inherit_baseline and inherit_baseline(state, self._earlier_versions(key, first.model),
                                                              first.n_classes):
                log.info("baseline inherited", model=state.model, version=state.version,
                         from_version=state.inherited_from)
        if state is not None and state.baseline is None and state.builder is None:
            # after a restart the state comes back without it (a state still building its baseline keeps
            # building: the baseline topic may be ahead of a state read back from an older record, and
            # mixing the two would count twice)
            state.baseline = _revive(self.baselines.get(key), Baseline)
        return state

    def _earlier_versions(self, key: str, model: str) -> list[tuple[MonitorState, Baseline]]:
        """(state, learnt baseline) of the model's other versions this worker holds (all of them when batches
        are re-keyed to their model's home partition)."""
        prefix = _state_key_prefix(model)
        found = []
        for other in self.states.stored_keys():
            if other == key or not other.startswith(prefix):
                continue
            state = _revive(self.states.get(other), MonitorState)
            baseline = _revive(self.baselines.get(other), Baseline)
            if state is not None and baseline is not None and state.model == model:
                found.append((state, baseline))
        return found

    def _ingest(self, key: str, group: list[Delivery], now: float) -> _Update | None:
        batches = [d.record.batch for d in group if isinstance(d.record, DecodedBatch)]
        state = self._state(key, batches[0])
        assert state is not None
        out = ingest_many(state, [(b, d.partition, d.offset) for b, d in zip(batches, group, strict=True)],
                          now, self.cfg)
        if out.skipped_duplicate:
            return None
        return _Update(key, state, out, self._partition_of(state.model, group[-1].partition), group[-1].attrs.id,
                       group)

    def _partition_of(self, model: str, arrived_on: int) -> int:
        """Where a model version's state is written and which worker sweeps it: its model's home partition
        when batches are re-keyed (a state written elsewhere before re-keying moves there), else the
        partition its batches arrive on."""
        return arrived_on if self.rekey is None else self.rekey.home(model)

    async def _save(self, u: _Update) -> None:
        inherited_unsaved = u.state.inherited_from is not None and self.baselines.get(u.key) is None
        if (u.out.baseline_changed or inherited_unsaved) and u.state.baseline is not None:
            # written when learnt (and on each refresh), not per batch
            await self.baselines.put(u.key, u.state.baseline, u.partition)
        await self.states.put(u.key, u.state, u.partition)  # one write per group: state and offsets together

    def _count(self, u: _Update) -> None:
        self.counters["batches"] += len(u.group)
        self.counters["predictions"] += sum(len(d.record.batch) for d in u.group if isinstance(d.record, DecodedBatch))
        self.counters["late_dropped"] += u.out.late_dropped
        self.counters["idle_closed"] += 0 if u.group else len(u.out.closed)
        if u.out.late_dropped or u.out.evicted:
            log.warning("predictions dropped", model=u.state.model, version=u.state.version,
                        late_dropped=u.out.late_dropped, evicted=u.out.evicted, watermark=u.state.watermark,
                        lateness_s=self.cfg.lateness_s)


@dataclass(frozen=True)
class _Update:
    """One model version's share of a group (or of an idle sweep: no deliveries): its new state, what it
    has to announce, and the partition its state is written on."""

    key: str
    state: MonitorState
    out: Outputs
    partition: int
    correlation_id: str
    group: list[Delivery] = field(default_factory=list)


def _by_state_key(deliveries: list[Delivery]) -> dict[str, list[Delivery]]:
    groups: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        assert isinstance(delivery.record, DecodedBatch)
        groups.setdefault(_state_key(delivery.record.batch), []).append(delivery)
    return groups


def _escaped(name: str) -> str:
    return name.replace("\\", "\\\\").replace("|", "\\|")


def _state_key(batch: PredictionBatch) -> str:
    """``model|version`` with ``|`` and ``\\`` escaped inside the names, so ``a|b``/``c`` and ``a``/``b|c``
    do not share one state (names without either character keep the key they always had)."""
    return f"{_escaped(batch.model)}|{_escaped(batch.version)}"


def _state_key_prefix(model: str) -> str:
    """What every state key of ``model``'s versions starts with (and no other model's: ``|`` is escaped)."""
    return f"{_escaped(model)}|"


def _revive(value: object, cls: type[T]) -> T | None:
    """Values read back from the state topic are already objects; dicts are accepted too."""
    if value is None or isinstance(value, cls):
        return value
    return cls.from_dict(value)  # type: ignore[attr-defined,no-any-return]
