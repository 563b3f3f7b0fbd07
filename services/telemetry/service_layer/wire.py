"""Between the wire and the monitor: fast batch decoding, and the records the monitor emits."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import orjson

from services.telemetry.domain.alerts import Alert as DomainAlert
from services.telemetry.domain.batch import PredictionBatch, event_seconds
from services.telemetry.domain.single import is_single, single_prediction
from services.telemetry.service_layer.monitor import ClosedWindow, Outputs
from shared.contracts.records import Alert, WindowStats
from shared.contracts.validation import ContractViolation
from shared.messaging.envelope import OutgoingMessage, build_message

SOURCE = "urn:bdguard:telemetry"

MAX_BATCH = 100_000
# event time may run ahead of this worker's clock by server clock skew, not more: one prediction far
# ahead (a timestamp in milliseconds, a wrong server clock) would carry the model version's watermark
# with it, and every later window would be dropped as too late
MAX_AHEAD_S = 300.0


@dataclass(frozen=True)
class DecodedBatch:
    """The decoded value, and the bytes it came from (forwarded as they are when the batch is re-keyed);
    ``ce_subject`` lets the shared delivery path bind log context."""

    batch: PredictionBatch
    raw: bytes | None = field(default=None, repr=False, compare=False)

    def ce_subject(self) -> str:
        return f"{self.batch.model}/{self.batch.version}"


def decode_batch(topic: str, raw: bytes | None, now: float | None = None) -> DecodedBatch:
    """Structural validation at numpy speed (a JSON Schema pass over 500-element arrays costs ms).

    Checks the same contract as ``schemas/telemetry.predictions.v1.schema.json``: required fields,
    equal column lengths, classes in range, probabilities in [0, 1]; and event times no more than
    ``MAX_AHEAD_S`` ahead of ``now`` (default: this machine's clock), after reading times sent in
    milliseconds, microseconds or nanoseconds as such (:func:`event_seconds`). A message holding one prediction
    (``prediction_id`` instead of ``ids``, see domain/single.py) is accepted too.
    """
    if raw is None:
        raise ContractViolation("empty message value (tombstone)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractViolation(f"value is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ContractViolation(f"schema {topic}: (root): value must be an object")
    try:
        batch = single_prediction(value) if is_single(value) else PredictionBatch.from_wire(value)
    except KeyError as exc:
        raise ContractViolation(f"schema {topic}: {exc.args[0]!r} is a required property") from exc
    except (TypeError, ValueError) as exc:
        raise ContractViolation(f"schema {topic}: {exc}") from exc
    if not 0 < len(batch) <= MAX_BATCH:
        raise ContractViolation(f"schema {topic}: ids: batch of {len(batch)} predictions (1..{MAX_BATCH})")
    if batch.n_classes < 2 or not ((batch.conf >= 0) & (batch.conf <= 1)).all():
        raise ContractViolation(f"schema {topic}: conf: probabilities must lie in [0, 1]; n_classes >= 2")
    seconds = event_seconds(batch.ts)  # milliseconds, microseconds and nanoseconds are read as such
    if seconds is not batch.ts:
        batch = dataclasses.replace(batch, ts=seconds)
    latest, clock = float(batch.ts.max()), time.time() if now is None else now
    if latest > clock + MAX_AHEAD_S:
        raise ContractViolation(f"schema {topic}: ts: event time {latest!r} (Unix seconds) lies "
                                f"{latest - clock:.0f} s in the future")
    return DecodedBatch(batch, raw)


def window_stats_record(model: str, version: str, kind: str, closed: ClosedWindow) -> WindowStats:
    m = closed.report.metrics
    return WindowStats(model=model, version=version, window_kind=kind, window_start=closed.start,
                       window_end=closed.end, count=int(closed.stats.count),
                       class_counts=[int(c) for c in closed.stats.class_counts], mean_conf=float(m["mean_conf"]),
                       entropy_mean=float(m["entropy_mean"]), entropy_std=float(m["entropy_std"]),
                       kl_divergence=m.get("kl_divergence"), first_prediction_id=closed.stats.first_id,
                       last_prediction_id=closed.stats.last_id, late_dropped=closed.late_dropped)


def alert_record(alert: DomainAlert) -> Alert:
    return Alert(**alert.to_dict(source="telemetry"))


def outgoing(model: str, version: str, kind: str, out: Outputs, correlation_id: str) -> list[OutgoingMessage]:
    """Alerts first (responders wait for them), then the closed windows' statistics; event ids depend on
    the window alone, so a window published again after a crash is the same event."""
    messages = [build_message(alert_record(alert), source=SOURCE, correlation_id=correlation_id,
                              event_id=alert.alert_id) for alert in out.alerts]
    return messages + [build_message(window_stats_record(model, version, kind, closed), source=SOURCE,
                                     correlation_id=correlation_id, event_id=f"ws-{model}-{version}-{closed.start}")
                       for closed in out.closed]
