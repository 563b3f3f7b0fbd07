"""Rollback settings (env prefix ``BDGUARD_ROLLBACK_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RollbackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_ROLLBACK_", env_file=".env", extra="ignore")

    serving_urls: list[str] = Field(default_factory=list,
                                    description="inference servers to switch (POST <url>/admin/model)")
    serving_admin_token: str = Field(default="", description="X-Admin-Token of the inference servers")
