"""Remediation service settings (env prefix ``BDGUARD_REMEDIATION_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RemediationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_REMEDIATION_", env_file=".env", extra="ignore")

    default_clean_data: Path | None = Field(default=None, description="clean .npz used when a request names none")
    clean_data_dirs: list[Path] = Field(default_factory=list,
                                        description="folders a request may name clean data in (none: requests "
                                                    "cannot name their own, the default is used)")
    out_dir: Path = Field(default=Path(".bdguard/remediated"), description="candidates land in <out_dir>/<model>/")
    source_url: str = Field(default="https://models.internal/bdguard-remediation",
                            description="source URL of candidates on the registry topic (must be on supply "
                                        "chain's trusted sources or internal registries)")
    signing_key: Path | None = Field(default=None, description="PEM key that signs candidates (model-signing)")
    rounds: int = Field(default=2, ge=1, description="scan → remediate rounds")
    nc_seconds: float = Field(default=30.0, gt=0, description="Neural Cleanse time budget per round")
