"""Client library inference servers embed: ``TelemetryClient.record(...)`` never blocks or raises."""

from services.telemetry.client.producer import Metrics, StripGuard, TelemetryClient
from services.telemetry.client.sender import AioKafkaSender, Sender
from services.telemetry.client.settings import TelemetrySettings

__all__ = ["AioKafkaSender", "Metrics", "Sender", "StripGuard", "TelemetryClient", "TelemetrySettings"]
