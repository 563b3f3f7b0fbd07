"""Scanner service settings (env prefix ``BDGUARD_SCANNER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ByteSize, Field
from pydantic_settings import SettingsConfigDict

from services.scanner.adapters.datasets import DEFAULT_MAX_ARRAY_BYTES
from shared.settings import ServiceSettings


class ScannerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_SCANNER_", env_file=".env", extra="ignore")

    default_clean_data: Path | None = Field(default=None, description="clean .npz used when a request names none")
    detectors: list[str] = Field(default_factory=list, description="detector keys; empty = the scanner default")
    seed: int = 0
    use_previous_version_baseline: bool = Field(
        default=True, description="compare trigger sizes with the latest clean version's scan report")
    reports_dir: Path = Field(default=Path(".bdguard/reports"))
    max_array_bytes: ByteSize = Field(
        default=ByteSize(DEFAULT_MAX_ARRAY_BYTES), gt=0,
        description="largest x or y array a scan loads from an .npz, read off its .npy header before numpy "
                    "allocates it (bytes, or e.g. '8GiB')")
    budget_scale: float = Field(default=1.0, gt=0, description="times the trigger searches' default work budget "
                                "(large models: 2-4 searches them better, and longer)")
