"""Every topic name in one place: ``<context>.<event>.v<N>``; each input topic has ``<topic>.dlq``."""

from __future__ import annotations

MODEL_VERSION_PUBLISHED = "registry.model-version-published.v1"
SUPPLY_CHAIN_VERDICT = "supply-chain.verdict.v1"
SCAN_REQUESTED = "scanner.scan-requested.v1"
SCAN_COMPLETED = "scanner.scan-completed.v1"
PREDICTIONS = "telemetry.predictions.v1"
WINDOW_STATS = "telemetry.window-stats.v1"
ALERTS = "monitoring.alert.v1"
INCIDENT_ESCALATED = "incident.escalated.v1"
ROLLBACK_COMPLETED = "rollback.completed.v1"
REMEDIATION_REQUESTED = "remediation.requested.v1"
REMEDIATION_COMPLETED = "remediation.completed.v1"
AUDIT = "audit.record.v1"

ALL_TOPICS = (
    MODEL_VERSION_PUBLISHED,
    SUPPLY_CHAIN_VERDICT,
    SCAN_REQUESTED,
    SCAN_COMPLETED,
    PREDICTIONS,
    WINDOW_STATS,
    ALERTS,
    INCIDENT_ESCALATED,
    ROLLBACK_COMPLETED,
    REMEDIATION_REQUESTED,
    REMEDIATION_COMPLETED,
    AUDIT,
)

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of an input topic."""
    return topic + DLQ_SUFFIX


def cloudevent_type(topic: str) -> str:
    """CloudEvents ``type`` of the events on a topic, e.g. ``dev.bdguard.scanner.scan-completed.v1``."""
    return "dev.bdguard." + topic
