"""Wire records, one per topic, mirroring ``schemas/<topic>.schema.json``.

faust Records with ``include_metadata=False`` so that plain Kafka consumers (aiokafka, other
languages) read clean JSON. CloudEvents attributes travel in ``ce_*`` headers (binary mode), see
:mod:`shared.contracts.cloudevents`. This module deliberately avoids postponed annotations: faust
evaluates field annotations at class creation.
"""

from typing import Any

import faust

from shared import topics


class WireRecord(faust.Record, include_metadata=False, serializer="json"):
    """Base of every wire record; :data:`RECORD_BY_TOPIC` ties record types to topics and schemas."""

    def ce_subject(self) -> str:
        """CloudEvents ``subject``: ``model/version`` where the record names a model version."""
        data = self.asdict()
        if "model" not in data:
            return str(data.get("subject", ""))
        version = data.get("version") or data.get("from_version") or ""
        return f"{data.get('model', '')}/{version}"


class ModelVersionPublished(WireRecord):
    model: str
    version: str
    artifact_uri: str
    artifact_digest: str
    source_url: str
    submitter: str
    signature_uri: str | None = None
    provenance: dict[str, Any] | None = None
    clean_data_uri: str | None = None


class SupplyChainVerdict(WireRecord):
    model: str
    version: str
    approved: bool
    artifact_uri: str
    artifact_digest: str
    rationale: str
    checks: list[dict[str, Any]]
    clean_data_uri: str | None = None


class ScanRequested(WireRecord):
    model: str
    version: str
    artifact_uri: str
    artifact_digest: str
    requested_by: str
    clean_data_uri: str | None = None


class ScanCompleted(WireRecord):
    model: str
    version: str
    verdict: str
    backdoor_detected: bool
    confidence: float
    target_classes: list[int]
    detectors: list[dict[str, Any]]
    duration_s: float
    report_uri: str | None = None


class PredictionBatch(WireRecord):
    model: str
    version: str
    server_id: str
    batch_id: str
    n_classes: int
    ids: list[str]
    ts: list[float]
    pred: list[int]
    conf: list[float]
    entropy: list[float]
    sig: list[str]
    strip: list[float] | None = None


class WindowStats(WireRecord):
    model: str
    version: str
    window_kind: str
    window_start: float
    window_end: float
    count: int
    class_counts: list[int]
    mean_conf: float
    entropy_mean: float
    entropy_std: float
    kl_divergence: float | None = None
    first_prediction_id: str | None = None
    last_prediction_id: str | None = None
    late_dropped: int = 0


class Alert(WireRecord):
    alert_id: str
    model: str
    version: str
    kind: str
    severity_hint: str
    source: str
    detected_at: float
    evidence: dict[str, Any]
    target_class: int | None = None
    window_start: float | None = None
    window_end: float | None = None
    first_prediction_id: str | None = None
    last_prediction_id: str | None = None


class IncidentEscalated(WireRecord):
    incident_id: str
    model: str
    version: str
    severity: str
    action: str
    confidence: float
    summary: str
    respond_by: float
    responders: list[str]
    alert_ids: list[str]
    first_signal_at: float | None = None
    first_prediction_id: str | None = None


class RollbackCompleted(WireRecord):
    incident_id: str
    model: str
    from_version: str
    status: str
    traffic_diverted: bool
    escalation_received_at: float
    completed_at: float
    duration_ms: float
    to_version: str | None = None
    affected: dict[str, Any] | None = None


class RemediationRequested(WireRecord):
    model: str
    version: str
    requested_by: str
    clean_data_uri: str | None = None
    incident_id: str | None = None


class RemediationCompleted(WireRecord):
    request_id: str
    model: str
    version: str
    status: str
    requested_by: str
    completed_at: float
    reason: str | None = None
    candidate_version: str | None = None
    candidate_uri: str | None = None
    candidate_digest: str | None = None
    meets_bar: bool | None = None
    figures: dict[str, Any] | None = None
    incident_id: str | None = None


class AuditRecord(WireRecord):
    seq: int
    recorded_at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


RECORD_BY_TOPIC: dict[str, type[WireRecord]] = {
    topics.MODEL_VERSION_PUBLISHED: ModelVersionPublished,
    topics.SUPPLY_CHAIN_VERDICT: SupplyChainVerdict,
    topics.SCAN_REQUESTED: ScanRequested,
    topics.SCAN_COMPLETED: ScanCompleted,
    topics.PREDICTIONS: PredictionBatch,
    topics.WINDOW_STATS: WindowStats,
    topics.ALERTS: Alert,
    topics.INCIDENT_ESCALATED: IncidentEscalated,
    topics.ROLLBACK_COMPLETED: RollbackCompleted,
    topics.REMEDIATION_REQUESTED: RemediationRequested,
    topics.REMEDIATION_COMPLETED: RemediationCompleted,
    topics.AUDIT: AuditRecord,
}
TOPIC_BY_RECORD: dict[type[WireRecord], str] = {cls: topic for topic, cls in RECORD_BY_TOPIC.items()}
