"""Traffic shapes the monitor's authors did not generate, through the in-memory monitor (no broker).

Benign shapes must raise no backdoor alert (stationary ones no alert at all); attacks must raise a
backdoor alert toward the right class within a stated number of 10 s windows of the campaign start.
Default settings (10 s tumbling windows, 2 s lateness, 10,000-prediction baseline) unless a test says
otherwise; 100 predictions/s, Poisson arrivals, one message per second. Misses and false alarms that
are a limit of the method are strict xfails that state the measured figure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from services.telemetry.domain import BACKDOOR_KINDS, Alert, PredictionBatch, encode, summarise_probs
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig, ingest

pytestmark = pytest.mark.unit

T0, WINDOW_S, N_BLOCKS, TRIGGER_HASH = 1_700_000_000.0, 10.0, 16, 0xABCDEF
SEEDS = (1, 2, 3)


@dataclass
class Server:
    """One model version's predictions: classes drawn from ``priors``, confidences from logits whose
    predicted-class margin is ``margin`` (14: every confidence ~1.0, 1: uncalibrated and low).
    Triggered inputs are flipped to the target class at a higher margin; a ``patch`` trigger carries one
    fixed block hash, a ``blend`` trigger none (every signature differs), a ``mark`` trigger a
    trigger-library match."""

    k: int
    seed: int
    priors: np.ndarray | None = None
    margin: float = 5.0
    version: str = "1"
    rng: np.random.Generator = field(init=False)
    counter: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        if self.priors is None:
            self.priors = self.rng.dirichlet(np.full(self.k, 50.0))

    def batch(self, ts: np.ndarray, *, priors: np.ndarray | None = None, rate: float = 0.0, target: int = 0,
              trigger: str = "patch") -> PredictionBatch:
        rng, n = self.rng, ts.size
        labels = rng.choice(self.k, size=n, p=self.priors if priors is None else priors)
        hashes = rng.integers(1, 2**24, size=(n, N_BLOCKS), dtype=np.uint32)
        hashes[rng.random(n) < 0.3, 12] = 0x123456  # a natural border block on every class
        hit = rng.random(n) < rate
        labels[hit] = target
        if trigger == "patch":
            hashes[hit, N_BLOCKS - 1] = TRIGGER_HASH
        logits = rng.normal(0.0, 1.0, size=(n, self.k))
        margin = rng.normal(self.margin, 1.0, size=n)
        margin[hit] = self.margin + 4.0
        logits[np.arange(n), labels] += margin
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        pred, conf, ent = summarise_probs(probs / probs.sum(axis=1, keepdims=True))
        ids = [f"{self.version}-{self.counter + i}" for i in range(n)]
        self.counter += n
        marks = ["nc-class3" if h else "" for h in hit.tolist()] if trigger == "mark" else None
        return PredictionBatch("m", self.version, "srv", uuid.uuid4().hex, self.k, ids, ts.astype(np.float64),
                               pred, conf, ent, encode(hashes, marks))


@dataclass
class Monitor:
    cfg: WindowConfig = field(default_factory=WindowConfig)
    states: dict[str, MonitorState] = field(default_factory=dict)
    alerts: list[tuple[float, Alert]] = field(default_factory=list)  # (event time when raised, alert)
    offset: int = 0

    def send(self, batch: PredictionBatch, offset: int | None = None) -> None:
        state = self.states.setdefault(batch.version, MonitorState("m", batch.version))
        self.offset += 1
        out = ingest(state, batch, 0, self.offset if offset is None else offset, now=float(batch.ts.max()),
                     cfg=self.cfg)
        self.alerts += [(float(batch.ts.max()), a) for a in out.alerts]

    def backdoor(self, after: float = -np.inf) -> list[tuple[float, Alert]]:
        return [(t, a) for t, a in self.alerts if a.kind in BACKDOOR_KINDS and t >= after]

    def windows_to_detect(self, start: float, targets: set[int]) -> float:
        """Windows from ``start`` to the first backdoor alert naming one of ``targets`` (inf: none)."""
        hits = [t for t, a in self.backdoor(start) if a.target_class in targets]
        return (min(hits) - start) / WINDOW_S if hits else np.inf


def arrivals(rate_per_s: float, seconds: float, seed: int, batch_s: float = 1.0) -> Iterator[np.ndarray]:
    """Poisson arrival times, one message per ``batch_s``."""
    rng = np.random.default_rng(seed + 1000)
    for t in np.arange(T0, T0 + seconds, batch_s):
        n = rng.poisson(rate_per_s * batch_s)
        if n:
            yield np.sort(rng.uniform(t, t + batch_s, size=n))


def one_hot_heavy(k: int, share: float) -> np.ndarray:
    return np.r_[share, np.full(k - 1, (1 - share) / (k - 1))]


# ---------------------------------------------------------------- benign, stationary: no alert at all

def _steady(seed: int, k: int = 10, seconds: float = 1000, **kw: object) -> Monitor:
    server, mon = Server(k, seed, **kw), Monitor()  # type: ignore[arg-type]
    for ts in arrivals(100, seconds, seed):
        mon.send(server.batch(ts))
    return mon


def _bursty(seed: int) -> Monitor:
    """Bursts of ~3,000 predictions in 5 s, then minutes of silence."""
    server, mon, rng = Server(10, seed), Monitor(), np.random.default_rng(seed)
    t = T0
    for _ in range(50):
        for j in range(5):
            mon.send(server.batch(np.sort(rng.uniform(t + j, t + j + 1, size=rng.poisson(600)))))
        t += 5 + rng.exponential(200)
    return mon


def _low_traffic(seed: int) -> Monitor:
    """1 prediction/s, one or two per message: windows of ~10, judged together (2,000 baseline)."""
    server, mon = Server(10, seed), Monitor(WindowConfig(baseline_size=2_000))
    for ts in arrivals(1, 6000, seed, batch_s=2.0):
        mon.send(server.batch(ts))
    return mon


def _out_of_order(seed: int) -> Monitor:
    """Clock jitter (0.3 s), rows shuffled within messages, messages delivered up to 1.5 s out of order."""
    server, mon, rng = Server(10, seed), Monitor(), np.random.default_rng(seed)
    pending: list[np.ndarray] = []
    for ts in arrivals(100, 1000, seed, batch_s=0.5):
        pending.append(rng.permutation(ts + rng.normal(0, 0.3, ts.size)))
        if len(pending) >= 3:
            mon.send(server.batch(pending.pop(int(rng.integers(len(pending))))))
    return mon


def _redelivered(seed: int) -> Monitor:
    """10% of messages written twice by a retrying producer; now and then the last 20 redelivered."""
    server, mon, rng = Server(10, seed), Monitor(), np.random.default_rng(seed)
    sent: list[tuple[PredictionBatch, int]] = []
    for ts in arrivals(100, 1000, seed):
        batch = server.batch(ts)
        sent.append((batch, mon.offset + 1))
        mon.send(batch)
        if rng.random() < 0.1:
            mon.send(batch)
        if rng.random() < 0.02:
            for again, offset in sent[-20:]:
                mon.send(again, offset=offset)
    return mon


def _interleaved_versions(seed: int) -> Monitor:
    """Five versions with different class mixes and rates, messages interleaved."""
    mon = Monitor()
    servers = [Server(10, seed * 10 + v, version=str(v)) for v in range(5)]
    for ts in arrivals(100, 600, seed):
        for v, server in enumerate(servers):
            mon.send(server.batch(ts[: max(1, ts.size * (v + 1) // 5)]))
    return mon


STATIONARY: dict[str, Callable[[int], Monitor]] = {
    "ten_classes": _steady,
    "two_classes": lambda s: _steady(s, k=2),
    "thousand_classes": lambda s: _steady(s, k=1000, seconds=300),
    "one_class_95_percent": lambda s: _steady(s, priors=one_hot_heavy(10, 0.95)),
    "confidences_all_near_one": lambda s: _steady(s, margin=14.0),
    "confidences_all_low": lambda s: _steady(s, margin=1.0),
    "bursty": _bursty,
    "low_traffic": _low_traffic,
    "out_of_order_and_late": _out_of_order,
    "redelivered_and_retried": _redelivered,
    "interleaved_versions": _interleaved_versions,
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", sorted(STATIONARY))
def test_stationary_benign_traffic_raises_no_backdoor_alert_and_drift_alerts_at_most_at_alpha(
        shape: str, seed: int) -> None:
    mon = STATIONARY[shape](seed)
    assert all(s.baseline is not None for s in mon.states.values())
    assert [(a.kind, a.target_class) for _, a in mon.backdoor()] == []
    # drift tests run at alpha = 1e-4 per window: one chance hit is allowed, and only a "low" one
    assert len(mon.alerts) <= 1 and all(a.severity_hint == "low" for _, a in mon.alerts)


# ---------------------------------------------------------------- benign, non-stationary: no backdoor alert

def _diurnal(seed: int, k: int, amplitude: float = 0.8, period_s: float = 1800.0) -> Monitor:
    """Every class's log-share swings on a (compressed) daily cycle with its own phase."""
    server, mon = Server(k, seed), Monitor()
    phase = np.random.default_rng(seed + 7).uniform(0, 2 * np.pi, size=k)
    assert server.priors is not None
    for ts in arrivals(100, period_s, seed):
        logp = np.log(server.priors) + amplitude * np.sin(2 * np.pi * (ts[0] - T0) / period_s + phase)
        mon.send(server.batch(ts, priors=np.exp(logp) / np.exp(logp).sum()))
    return mon


def _slow_drift(seed: int, k: int, seconds: float = 3000) -> Monitor:
    """The class mix moves linearly, over 290 windows, to another mix."""
    server, mon = Server(k, seed), Monitor()
    end = np.random.default_rng(seed + 7).dirichlet(np.full(k, 2.0))
    for ts in arrivals(100, seconds, seed):
        f = float(np.clip((ts[0] - T0 - 100) / (seconds - 100), 0, 1))
        mon.send(server.batch(ts, priors=(1 - f) * server.priors + f * end))
    return mon


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("shape", "run"), [("diurnal_two_classes", lambda s: _diurnal(s, 2))])
def test_natural_class_mix_changes_raise_no_backdoor_alert(shape: str, run: Callable[[int], Monitor],
                                                           seed: int) -> None:
    # with two classes a one-class rise is all a label shift is (the proportionality test has no degrees of
    # freedom; before it was reported as targeted, 205-311 of 350 windows of the cycle were): it is reported
    # as class drift, so the responder still sees the mix move, at drift severity
    mon = run(seed)
    assert [(a.kind, a.target_class) for _, a in mon.backdoor()] == []
    assert any(a.kind == "class_distribution_drift" for _, a in mon.alerts)


# ---------------------------------------------------------------- attacks: caught within N windows

ATTACK_AT = T0 + 200.0  # the baseline (10,000 predictions) is complete after ~100 s


def _campaign(seed: int, *, k: int = 10, rate: float, target: int = 3, trigger: str = "patch",
              seconds: float = 600, priors: np.ndarray | None = None, ramp_s: float = 0.0,
              targets: tuple[int, ...] = (), start: float = ATTACK_AT, traffic: float = 100,
              batch_s: float = 1.0, cfg: WindowConfig | None = None) -> Monitor:
    server, mon = Server(k, seed, priors=priors), Monitor(cfg or WindowConfig())
    for ts in arrivals(traffic, seconds, seed, batch_s=batch_s):
        on = ts[0] >= start
        r = rate * min(1.0, (ts[0] - start) / ramp_s) if on and ramp_s else rate * on
        t = targets[int((ts[0] - start) // WINDOW_S) % len(targets)] if on and targets else target
        mon.send(server.batch(ts, rate=r, target=t, trigger=trigger))
    assert not mon.backdoor() or min(t for t, _ in mon.backdoor()) >= start, "alert before the campaign"
    return mon


BIG_BASELINE = WindowConfig(baseline_size=50_000)  # 500 s of traffic: the campaign starts at 600 s

ATTACKS: list[tuple[str, Callable[[int], Monitor], set[int], float]] = [
    ("patch_5pct", lambda s: _campaign(s, rate=0.05), {3}, 1),
    ("patch_1pct", lambda s: _campaign(s, rate=0.01), {3}, 5),
    ("varied_signatures_5pct", lambda s: _campaign(s, rate=0.05, trigger="blend"), {3}, 2),
    ("thousand_classes_varied_signatures_5pct",
     lambda s: _campaign(s, k=1000, rate=0.05, target=7, trigger="blend", seconds=400), {7}, 1),
    ("thousand_classes_patch_2pct", lambda s: _campaign(s, k=1000, rate=0.02, target=7, seconds=400), {7}, 1),
    ("alternating_targets_patch", lambda s: _campaign(s, rate=0.05, targets=(2, 5, 7)), {2, 5, 7}, 1),
    ("alternating_targets_varied_signatures",
     lambda s: _campaign(s, rate=0.05, trigger="blend", targets=(2, 5, 7)), {2, 5, 7}, 6),
    ("slow_ramp_to_5pct_over_30_windows",
     lambda s: _campaign(s, rate=0.05, trigger="blend", ramp_s=300, seconds=900), {3}, 30),
    ("library_matches_from_the_first_prediction",
     lambda s: _campaign(s, rate=0.05, trigger="mark", start=T0, seconds=300), {3}, 1),
    ("library_matches_from_the_first_prediction_low_traffic",
     lambda s: _campaign(s, rate=0.05, trigger="mark", start=T0, seconds=3000, traffic=0.5, batch_s=4.0), {3}, 60),
    # 0.5 predictions/s, two per message: the pattern summary gathers 64 predictions before it drops
    # components seen once (measured: 21-48 windows; missed over 300 before it gathered them)
    ("low_traffic_patch_5pct",
     lambda s: _campaign(s, rate=0.05, start=T0 + 21000, seconds=24000, traffic=0.5, batch_s=4.0), {3}, 60),
    ("patch_1pct_toward_a_95pct_class",
     lambda s: _campaign(s, rate=0.01, target=0, priors=one_hot_heavy(10, 0.95), seconds=800), {0}, 40),
    ("two_classes_patch_5pct", lambda s: _campaign(s, k=2, rate=0.05, target=1), {1}, 2),
    ("varied_signatures_2pct_big_baseline",
     lambda s: _campaign(s, rate=0.02, trigger="blend", start=T0 + 600, seconds=1200, cfg=BIG_BASELINE), {3}, 40),
    ("varied_signatures_5pct_toward_a_30pct_class_big_baseline",
     lambda s: _campaign(s, rate=0.05, target=0, trigger="blend", priors=one_hot_heavy(10, 0.3),
                         start=T0 + 600, seconds=1200, cfg=BIG_BASELINE), {0}, 40),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("shape", "run", "targets", "within"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_campaign_is_caught_within_the_stated_windows(shape: str, run: Callable[[int], Monitor],
                                                        targets: set[int], within: float, seed: int) -> None:
    mon = run(seed)
    start = (T0 + 600 if "big_baseline" in shape else T0 if shape.startswith("library")
             else T0 + 21000 if shape.startswith("low_traffic") else ATTACK_AT)
    assert mon.backdoor(), f"{shape}: missed"
    assert mon.backdoor()[0][1].target_class in targets
    assert mon.windows_to_detect(start, targets) <= within


LIMITS: list[tuple[str, Callable[[int], Monitor], set[int], str]] = [
    ("two_classes_varied_signatures_5pct",
     lambda s: _campaign(s, k=2, rate=0.05, target=1, trigger="blend"), {1},
     "two classes, no signature: a one-class rise alone cannot be told from a label shift, so it is class drift"),
    ("varied_signatures_5pct_toward_a_95pct_class",
     lambda s: _campaign(s, rate=0.05, target=0, trigger="blend", priors=one_hot_heavy(10, 0.95)), {0},
     "the share of a 95% class rises by 0.25 points, a quarter of min_share_lift; no signature to see"),
    ("baseline_learnt_during_the_campaign_patch",
     lambda s: _campaign(s, rate=0.05, start=T0), {3},
     "the baseline is the first 10,000 predictions: the campaign's class share and patch are in it"),
    ("baseline_learnt_during_the_campaign_varied_signatures",
     lambda s: _campaign(s, rate=0.05, trigger="blend", start=T0), {3},
     "the baseline is the first 10,000 predictions: the campaign's class share is in it"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("shape", "run", "targets", "reason"), LIMITS, ids=[a[0] for a in LIMITS])
def test_campaigns_beyond_the_method_are_missed(shape: str, run: Callable[[int], Monitor], targets: set[int],
                                                reason: str, seed: int, request: pytest.FixtureRequest) -> None:
    request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    mon = run(seed)
    assert {a.target_class for _, a in mon.backdoor()} & targets, f"{shape}: missed ({reason})"
