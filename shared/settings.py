"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Read from ``BDGUARD_*`` (or the subclass prefix) environment variables and ``.env``."""

    model_config = SettingsConfigDict(env_prefix="BDGUARD_", env_file=".env", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="comma-separated host:port list",
    )
    database_url: str = Field(
        default="sqlite:///.bdguard/bdguard.db",
        validation_alias="BDGUARD_DATABASE_URL",
    )
    home: Path = Field(default=Path(".bdguard"), validation_alias="BDGUARD_HOME")
    log_level: str = Field(default="INFO", validation_alias="BDGUARD_LOG_LEVEL")
    log_json: bool | None = Field(default=None, validation_alias="BDGUARD_LOG_JSON")
    topic_partitions: int = Field(default=3, ge=1, validation_alias="BDGUARD_TOPIC_PARTITIONS")
