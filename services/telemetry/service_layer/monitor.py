"""Windowed monitoring of one model version's prediction stream (no I/O; faust calls it per batch).

Per batch: dedupe by Kafka position (a redelivered batch after a crash is not counted twice), feed the
baseline until it has ``baseline_size`` predictions, add the batch to every event-time window it
falls in (vectorised), re-evaluate open windows early so that a trigger campaign is reported within
a fraction of a window, and close windows once the watermark passes their end plus the lateness.
Predictions that arrive for windows already closed are dropped and counted (``late_dropped``, carried
by the next closed window); service_layer/idle.py closes the windows of a model version gone quiet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.telemetry.domain.alerts import Alert
from services.telemetry.domain.baseline import Baseline, BaselineBuilder
from services.telemetry.domain.batch import PredictionBatch, concat
from services.telemetry.domain.evaluate import WindowReport, evaluate_triggers, evaluate_window
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats

MAX_REMEMBERED_ALERTS = 512
_THRESHOLDS = Thresholds()
MAX_REMEMBERED_BATCHES = 256  # a producer retry can write one batch twice, a few offsets apart


@dataclass(frozen=True)
class WindowConfig:
    window_s: float = 10.0
    step_s: float = 10.0
    lateness_s: float = 2.0
    baseline_size: int = 10_000
    baseline_refresh_s: float = 0.0  # 0 = never; e.g. 604800 for a weekly refresh (event time)
    early_eval_s: float = 0.25
    pattern_capacity: int = 256
    max_open_windows: int = 64
    min_judged: int = 200  # a window with fewer predictions is judged together with the ones before it
    max_carry_s: float = 600.0  # ... over at most this much event time
    campaign_s: float = 600.0  # backdoor findings are also judged over the closed windows of this span; 0 = off
    inherit_baseline: bool = True  # a new version is judged against its model's latest learnt baseline at once

    @property
    def kind(self) -> str:
        return "tumbling" if self.step_s == self.window_s else "hopping"


@dataclass
class ClosedWindow:
    start: float
    end: float
    report: WindowReport
    stats: WindowStats
    carried_alerts: list[Alert] = field(default_factory=list)  # findings over this and earlier windows
    late_dropped: int = 0  # predictions dropped as too late since the previous closed window


@dataclass
class Outputs:
    closed: list[ClosedWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    skipped_duplicate: bool = False
    baseline_changed: bool = False
    late_dropped: int = 0  # in this call: their windows had closed
    evicted: int = 0  # in this call: predictions the open-window bound threw away unjudged (per window)


@dataclass
class MonitorState:
    """What the monitor keeps for one model version (stored in a changelogged faust table).

    The finished baseline is not part of the serialised state: it is large (its pattern sketch) and
    written once, so it lives in its own table and is re-attached after recovery.
    """

    model: str
    version: str
    builder: BaselineBuilder | None = None
    baseline: Baseline | None = None
    baseline_at: float = -math.inf  # watermark when the current baseline was finished
    refresh: BaselineBuilder | None = None
    quiet_since: float = -math.inf  # no baseline learning until a full window after the last backdoor alert
    carry: WindowStats | None = None  # closed windows too small to judge alone (low-rate traffic)
    carry_start: float = -math.inf
    campaign: WindowStats | None = None  # closed windows of the current ``campaign_s`` span, summed
    campaign_start: float = -math.inf
    windows: dict[float, WindowStats] = field(default_factory=dict)
    last_eval: dict[float, float] = field(default_factory=dict)
    watermark: float = -math.inf
    offsets: dict[int, int] = field(default_factory=dict)
    emitted: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    late_dropped: int = 0  # dropped as too late, not yet reported by a closed window
    inherited_from: str | None = None  # the earlier version whose baseline this one is judged against for now
    raised_backdoor: bool = False  # a backdoor alert was raised: its baseline is no reference for later versions

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version,
                "builder": None if self.builder is None else self.builder.to_dict(),
                "baseline_at": None if self.baseline_at == -math.inf else self.baseline_at,
                "refresh": None if self.refresh is None else self.refresh.to_dict(),
                "quiet_since": None if self.quiet_since == -math.inf else self.quiet_since,
                "carry": None if self.carry is None else self.carry.to_dict(),
                "carry_start": None if self.carry_start == -math.inf else self.carry_start,
                "campaign": None if self.campaign is None else self.campaign.to_dict(),
                "campaign_start": None if self.campaign_start == -math.inf else self.campaign_start,
                "windows": {repr(s): w.to_dict() for s, w in self.windows.items()},
                "last_eval": {repr(s): t for s, t in self.last_eval.items()},
                "watermark": None if self.watermark == -math.inf else self.watermark,
                "offsets": {str(p): o for p, o in self.offsets.items()}, "emitted": self.emitted,
                "batch_ids": self.batch_ids, "late_dropped": self.late_dropped,
                "inherited_from": self.inherited_from, "raised_backdoor": self.raised_backdoor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorState:
        def builder(key: str) -> BaselineBuilder | None:
            return None if d.get(key) is None else BaselineBuilder.from_dict(d[key])

        def time_or_never(key: str) -> float:
            return -math.inf if d.get(key) is None else float(d[key])

        return cls(d["model"], d["version"], builder=builder("builder"), baseline=None,
                   baseline_at=time_or_never("baseline_at"), refresh=builder("refresh"),
                   quiet_since=time_or_never("quiet_since"), carry_start=time_or_never("carry_start"),
                   carry=None if d.get("carry") is None else WindowStats.from_dict(d["carry"]),
                   campaign=None if d.get("campaign") is None else WindowStats.from_dict(d["campaign"]),
                   campaign_start=time_or_never("campaign_start"),
                   windows={float(s): WindowStats.from_dict(w) for s, w in d["windows"].items()},
                   last_eval={float(s): float(t) for s, t in d["last_eval"].items()},
                   watermark=time_or_never("watermark"),
                   offsets={int(p): int(o) for p, o in d["offsets"].items()}, emitted=list(d["emitted"]),
                   batch_ids=list(d.get("batch_ids", [])), late_dropped=int(d.get("late_dropped", 0)),
                   inherited_from=d.get("inherited_from"), raised_backdoor=bool(d.get("raised_backdoor", False)))


def subset(batch: PredictionBatch, mask: np.ndarray) -> PredictionBatch:
    idx = np.flatnonzero(mask)
    if idx.size and idx[-1] - idx[0] + 1 == idx.size:  # one run (event time mostly ascends): slice
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        rows: slice | np.ndarray = slice(lo, hi)
        ids, sig = batch.ids[lo:hi], batch.sig[lo:hi]
    else:
        rows = idx
        ids, sig = [batch.ids[i] for i in idx], [batch.sig[i] for i in idx]
    return dataclasses.replace(
        batch, ids=ids, ts=batch.ts[rows], pred=batch.pred[rows], conf=batch.conf[rows],
        entropy=batch.entropy[rows], sig=sig, strip=None if batch.strip is None else batch.strip[rows])


def window_starts(ts: np.ndarray, cfg: WindowConfig) -> np.ndarray:
    """Every window start any of ``ts`` falls into (``step`` grid, ``window`` long)."""
    last = np.floor(ts / cfg.step_s)
    per = math.ceil(cfg.window_s / cfg.step_s)
    starts = np.unique(np.concatenate([(last - k) * cfg.step_s for k in range(per)]))
    return starts


def ingest(state: MonitorState, batch: PredictionBatch, partition: int, offset: int, now: float,
           cfg: WindowConfig) -> Outputs:
    return ingest_many(state, [(batch, partition, offset)], now, cfg)


def ingest_many(state: MonitorState, items: list[tuple[PredictionBatch, int, int]], now: float,
                cfg: WindowConfig) -> Outputs:
    """Add batches of one model version (with their Kafka positions, in order) and run the window math
    once over all of them: a worker under load pays the per-update cost per group, not per message.

    Batches are remembered as seen only once they are counted, so a batch that makes this raise is
    still new when it is handed over again on its own (and then dead-lettered).
    """
    fresh = _first_deliveries(state, items)
    if not fresh:
        return Outputs(skipped_duplicate=True)
    counted = [b for b, _, _ in fresh if len(b)]
    out = _ingest(state, concat(counted), now, cfg) if counted else Outputs()
    for batch, partition, offset in fresh:
        state.offsets[partition] = max(offset, state.offsets.get(partition, -1))
        state.batch_ids = [*state.batch_ids[-(MAX_REMEMBERED_BATCHES - 1):], _batch_key(batch)]
    return out


def _batch_key(batch: PredictionBatch) -> str:
    """What a producer retry repeats: the batch id *and* who sent it and what it holds. Plain clients
    reuse batch ids (a copied schema example, a counter restarting with the server) and prediction ids
    (one request counter per server); keyed on the id alone, their new predictions were dropped as retries.
    """
    if not len(batch):
        return batch.batch_id[:16]
    head = (batch.server_id, batch.batch_id, len(batch), batch.ids[0], float(batch.ts[0]), int(batch.pred[0]),
            float(batch.conf[0]), batch.ids[-1], float(batch.ts[-1]))
    # the changelog carries these with every update: keep them short
    return hashlib.blake2b(repr(head).encode(), digest_size=8).hexdigest()


def _first_deliveries(state: MonitorState, items: list[tuple[PredictionBatch, int, int]],
                      ) -> list[tuple[PredictionBatch, int, int]]:
    """Leave out redeliveries after a crash (offset already counted) and producer retries (same batch
    id under a new offset, possibly within the same group)."""
    seen, fresh = set(state.batch_ids), []
    for batch, partition, offset in items:
        if offset <= state.offsets.get(partition, -1) or _batch_key(batch) in seen:
            continue
        seen.add(_batch_key(batch))
        fresh.append((batch, partition, offset))
    return fresh


def _ingest(state: MonitorState, batch: PredictionBatch, now: float, cfg: WindowConfig) -> Outputs:
    out = Outputs()
    if state.baseline is None:
        state.builder = state.builder or BaselineBuilder(cfg.baseline_size)
        used = state.builder.add(batch)
        out.alerts += _learning_alerts(state, state.builder.stats, now)
        if state.builder.ready:
            state.baseline, state.builder = state.builder.build(), None
            state.baseline_at, out.baseline_changed = float(batch.ts.max()), True
        if used == len(batch):
            return out
        batch = subset(batch, np.arange(len(batch)) >= used)
    # windows a durable idle watermark has passed but a crash left open close first, exactly as they
    # were published (the late drops below belong to the next record, not to a re-published one)
    close_into(out, state, now, cfg)
    out.late_dropped, out.evicted = _add_to_windows(state, batch, cfg)
    state.late_dropped += out.late_dropped
    state.watermark = max(state.watermark, float(batch.ts.max()))
    out.alerts += _early(state, now, cfg)
    close_into(out, state, now, cfg)
    _refresh_baseline(state, batch, out, cfg)
    return out


def _learning_alerts(state: MonitorState, learnt: WindowStats, now: float) -> list[Alert]:
    """Trigger-library matches among the predictions the baseline is learnt from, over the whole learning
    period so far: a campaign that starts with a new model version would otherwise be reported only once
    the baseline is complete (measured: 10 windows late at 100 predictions/s, hours for a model version
    with little traffic)."""
    if not learnt.triggers:
        return []
    return _fresh(state, evaluate_triggers(learnt, model=state.model, version=state.version,
                                           window_start=learnt.ts_min, window_end=learnt.ts_max, now=now))


def close_into(out: Outputs, state: MonitorState, now: float, cfg: WindowConfig) -> None:
    """Close what the watermark has passed, with the findings of those windows not announced yet."""
    closed = close_due(state, state.watermark - cfg.lateness_s, now, cfg)
    out.closed += closed
    out.alerts += [a for w in closed for a in _fresh(state, w.report.alerts + w.carried_alerts)]


def _refresh_baseline(state: MonitorState, batch: PredictionBatch, out: Outputs, cfg: WindowConfig) -> None:
    """Re-learn the baseline every ``baseline_refresh_s`` from traffic that raised no backdoor alert.

    The old baseline stays in force until the new one is complete, and batches that coincide with a
    backdoor finding are left out, so a trigger campaign cannot teach itself into the baseline.
    """
    # a version judged against an earlier one's baseline learns its own at once
    due = state.inherited_from is not None or (
        cfg.baseline_refresh_s > 0 and state.watermark - state.baseline_at >= cfg.baseline_refresh_s)
    if not due:
        return
    if any(a.is_backdoor and not (state.inherited_from and _class_share_only(a)) for a in out.alerts):
        # the campaign may have started before it was detected: drop what was learnt so far, too (a release's
        # class shares alone, against another version's baseline, do not hold its own back: a retrained model
        # may shift them for good, and would be reported for ever)
        state.refresh, state.quiet_since = None, state.watermark + cfg.window_s
        return
    if state.watermark < state.quiet_since + cfg.window_s:
        return
    state.refresh = state.refresh or BaselineBuilder(cfg.baseline_size)
    state.refresh.add(batch)
    if state.refresh.ready:
        state.baseline, state.refresh = state.refresh.build(), None
        state.baseline_at, out.baseline_changed, state.inherited_from = state.watermark, True, None


def _class_share_only(alert: Alert) -> bool:
    """A targeted finding that only the class shares support (nothing in the inputs corroborates it)."""
    return alert.kind == "targeted_misclassification" and not alert.evidence.get("corroborated", False)


def _add_to_windows(state: MonitorState, batch: PredictionBatch, cfg: WindowConfig) -> tuple[int, int]:
    """Add ``batch`` to its open windows; returns how many predictions went into no window because
    their windows had closed (late), and how many the open-window bound threw away (evicted)."""
    cutoff = state.watermark - cfg.lateness_s
    # too late: that window is closed; counting it now would rewrite history
    starts = [float(s) for s in window_starts(batch.ts, cfg) if s + cfg.window_s > cutoff]
    # only the newest windows survive the bound below: a backlog spanning thousands of windows in one
    # batch built (and masked the batch for) every one of them before throwing most away
    kept = set(sorted({*state.windows, *starts})[-cfg.max_open_windows:])
    for start in (s for s in starts if s in kept):
        mask = (batch.ts >= start) & (batch.ts < start + cfg.window_s)
        stats = state.windows.get(start)
        if stats is None:
            stats = state.windows[start] = WindowStats(batch.n_classes, cfg.pattern_capacity)
        stats.add(batch if mask.all() else subset(batch, mask))
    late, evicted = _left_out(batch.ts, cutoff, min(kept, default=math.inf), cfg)
    while len(state.windows) > cfg.max_open_windows:  # event times all over the place: keep the newest
        oldest = min(state.windows)
        evicted += state.windows.pop(oldest).count
        state.last_eval.pop(oldest, None)
    return late, evicted


def _left_out(ts: np.ndarray, cutoff: float, first_kept: float, cfg: WindowConfig) -> tuple[int, int]:
    """Predictions counted in no window: all their windows had closed (late), or the open-window bound
    kept none of them. A prediction's newest window starts at ``floor(ts / step) * step``; for hopping
    windows one that still reaches a later open window is counted there, so it is not dropped."""
    oldest = math.floor(float(ts.min()) / cfg.step_s) * cfg.step_s
    if oldest + cfg.window_s > cutoff and oldest >= first_kept:  # the usual case: one pass over ts, no array
        return 0, 0
    newest = np.floor(ts / cfg.step_s) * cfg.step_s
    late = newest + cfg.window_s <= cutoff
    return int(np.count_nonzero(late)), int(np.count_nonzero(~late & (newest < first_kept)))


def _evaluate(state: MonitorState, start: float, stats: WindowStats, now: float, cfg: WindowConfig,
              end: float | None = None, thresholds: Thresholds | None = None) -> WindowReport:
    assert state.baseline is not None
    report = evaluate_window(stats, state.baseline, model=state.model, version=state.version, window_start=start,
                             window_end=start + cfg.window_s if end is None else end, thresholds=thresholds,
                             now=now)
    if state.inherited_from is None:
        return report
    return dataclasses.replace(report, alerts=[dataclasses.replace(a, evidence={
        **a.evidence, "baseline_of_version": state.inherited_from}) for a in report.alerts])


def inherit_baseline(state: MonitorState, earlier: Iterable[tuple[MonitorState, Baseline]], n_classes: int) -> bool:
    """Judge a version that has no baseline yet against its model's latest learnt one at once, while its own is
    learnt from traffic that raises no backdoor alert (``_refresh_baseline``). Otherwise a campaign that starts
    with a new version's release is learnt as its normal traffic. ``earlier``: (state, baseline) of the model's
    other versions; only an own (not itself inherited) baseline over as many classes, of a version that never
    raised a backdoor alert (the version a rollback just left is no reference), is taken, the latest learnt."""
    if state.baseline is not None or state.builder is not None or state.watermark != -math.inf:
        return False
    own = [(s.baseline_at, s.version, b) for s, b in earlier
           if s.inherited_from is None and not s.raised_backdoor and s.version != state.version
           and b.n_classes == n_classes]
    if not own:
        return False
    _, version, baseline = max(own, key=lambda t: (t[0], t[1]))
    state.baseline, state.inherited_from = baseline, version
    return True


def _early(state: MonitorState, now: float, cfg: WindowConfig) -> list[Alert]:
    """Backdoor findings of open windows, as soon as the evidence is there (drift waits for the close).

    An open window is looked at up to ``window_s / early_eval_s`` times (at most 100 counted), and every
    look spends the false-alarm budget again: the early looks share ``alpha`` among them (Bonferroni),
    so clean traffic alerts no more often than with a single look at the close, which keeps it whole."""
    looks = min(100.0, cfg.window_s / cfg.early_eval_s) if cfg.early_eval_s > 0 else 100.0
    thr = dataclasses.replace(_THRESHOLDS, alpha=_THRESHOLDS.alpha / max(looks, 1.0))
    found: list[Alert] = []
    for start, stats in state.windows.items():
        if now - state.last_eval.get(start, -math.inf) < cfg.early_eval_s:
            continue
        state.last_eval[start] = now
        found += _fresh(state, _evaluate(state, start, stats, now, cfg, thresholds=thr).backdoor_alerts)
        if stats.count < cfg.min_judged and _carries(state, start, cfg):
            assert state.carry is not None
            found += _fresh(state, _evaluate(state, state.carry_start, state.carry.merge(stats), now, cfg,
                                             end=start + cfg.window_s, thresholds=thr).backdoor_alerts)
    return found


def _carries(state: MonitorState, start: float, cfg: WindowConfig) -> bool:
    """Whether earlier small windows are waiting to be judged with this one (tumbling windows only:
    hopping windows overlap, so adding them up would count predictions twice)."""
    return (cfg.kind == "tumbling" and state.carry is not None
            and start + cfg.window_s - state.carry_start <= cfg.max_carry_s)


def _close_small(state: MonitorState, start: float, stats: WindowStats, now: float,
                 cfg: WindowConfig) -> list[Alert]:
    """Judge a small window together with the small ones before it; keep accumulating while small."""
    if cfg.kind != "tumbling" or stats.count >= cfg.min_judged:
        state.carry = None
        return []
    if not _carries(state, start, cfg):
        state.carry, state.carry_start = None, start
    view = stats if state.carry is None else state.carry.merge(stats)
    alerts = [] if view is stats else _evaluate(state, state.carry_start, view, now, cfg,
                                                 end=start + cfg.window_s).alerts
    state.carry = view if view.count < cfg.min_judged else None
    return alerts


def _close_campaign(state: MonitorState, start: float, stats: WindowStats, now: float,
                    cfg: WindowConfig) -> list[Alert]:
    """Backdoor findings of the closed windows of the current ``campaign_s`` span taken together: a
    campaign too thin to stand out in any one window (a low rate, a common target class, a slow start)
    stands out in their sum. The sum is judged again at every close, so its tests run at ``alpha``
    divided by the windows per span. Tumbling windows only (hopping windows overlap)."""
    if cfg.kind != "tumbling" or cfg.campaign_s <= 0:
        return []
    if state.campaign is None or start + cfg.window_s - state.campaign_start > cfg.campaign_s:
        state.campaign, state.campaign_start = stats, start
        return []
    state.campaign = state.campaign.merge(stats)
    thr = dataclasses.replace(_THRESHOLDS, alpha=_THRESHOLDS.alpha * cfg.window_s / max(cfg.campaign_s, cfg.window_s))
    return _evaluate(state, state.campaign_start, state.campaign, now, cfg, end=start + cfg.window_s,
                     thresholds=thr).backdoor_alerts


def close_due(state: MonitorState, watermark: float, now: float, cfg: WindowConfig) -> list[ClosedWindow]:
    """Close every window that ended before ``watermark``; the state forgets it (windows expire)."""
    closed = []
    for start in sorted(s for s in state.windows if s + cfg.window_s <= watermark):
        stats = state.windows.pop(start)
        state.last_eval.pop(start, None)
        if stats.count >= cfg.min_judged or cfg.kind != "tumbling":
            stats.patterns.flush()  # judged alone: what small batches held back counts now; a small window
            # keeps it for the windows it is judged with (carry, campaign), where it adds up
        report = _evaluate(state, start, stats, now, cfg)
        carried = _close_small(state, start, stats, now, cfg) + _close_campaign(state, start, stats, now, cfg)
        # the late drops so far ride on the next closed window's record, then the count starts again
        closed.append(ClosedWindow(start, start + cfg.window_s, report, stats, carried, state.late_dropped))
        state.late_dropped = 0
    return closed


def _fresh(state: MonitorState, alerts: list[Alert]) -> list[Alert]:
    new = [a for a in alerts if a.alert_id not in state.emitted]
    state.emitted = (state.emitted + [a.alert_id for a in new])[-MAX_REMEMBERED_ALERTS:]
    state.raised_backdoor = state.raised_backdoor or any(a.is_backdoor for a in new)
    return new
