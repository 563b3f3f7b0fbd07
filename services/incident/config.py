"""Incident response settings (env prefix ``BDGUARD_INCIDENT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IncidentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_INCIDENT_", env_file=".env", extra="ignore")

    correlation_window_s: float = Field(default=3600.0, gt=0, description="alerts this close join one incident")
    rollback_confidence: float = Field(default=0.85, ge=0, le=1, description="confidence for rollback")
    webhook_urls: list[str] = Field(default_factory=list, description="notification webhooks (Slack-compatible)")
    webhook_secret: str = Field(default="", description="HMAC-SHA256 key for the X-Bdguard-Signature header")
    webhook_retries: int = Field(default=4, ge=0)
