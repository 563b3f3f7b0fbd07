"""Client settings, from ``BDGUARD_TELEMETRY_*`` environment variables (and ``KAFKA_BOOTSTRAP_SERVERS``)."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PREDICTIONS_TOPIC = "telemetry.predictions.v1"
CE_TYPE = "dev.bdguard.telemetry.predictions.v1"


class TelemetrySettings(BaseSettings):
    """How the embedded producer buffers and ships predictions."""

    model_config = SettingsConfigDict(env_prefix="BDGUARD_TELEMETRY_", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("bootstrap_servers", "BDGUARD_TELEMETRY_BOOTSTRAP_SERVERS",
                                      "KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic: str = PREDICTIONS_TOPIC
    source: str = "bdguard/inference-server"
    server_id: str = Field(default_factory=socket.gethostname)
    max_buffered: int = Field(default=50_000, ge=1,
                              description="predictions held while Kafka is slow or down")
    batch_size: int = Field(default=500, ge=1, description="predictions per Kafka message")
    linger_ms: float = Field(default=200.0, ge=0, description="longest wait before a partial batch is sent")
    drop_policy: Literal["oldest", "newest"] = "oldest"
    send_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_backoff_s: float = Field(default=1.0, gt=0)
    reconnect_backoff_max_s: float = Field(default=30.0, gt=0)
    stop_timeout_s: float = Field(default=5.0, ge=0)
    max_pending_inputs: int = Field(default=5_000, ge=0,
                                    description="inputs kept for STRIP/trigger matching; beyond, skipped")
    signature_grid: tuple[int, int] = (4, 4)
