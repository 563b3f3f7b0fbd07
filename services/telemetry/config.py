"""Telemetry analysis settings (env prefix ``BDGUARD_TELEMETRY_``)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TelemetrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_TELEMETRY_", env_file=".env", extra="ignore")

    window_s: float = Field(default=10.0, gt=0, description="window length (event time)")
    step_s: float = Field(default=10.0, gt=0, description="hop; equal to window_s gives tumbling windows")
    lateness_s: float = Field(default=2.0, ge=0, description="how long a window waits for late predictions")
    baseline_size: int = Field(default=10_000, ge=100, description="first N predictions form the baseline")
    baseline_refresh_s: float = Field(default=0.0, ge=0, description="re-learn the baseline (604800 = weekly)")
    early_eval_s: float = Field(default=0.25, ge=0, description="re-evaluate an open window at most this often")
    min_judged: int = Field(default=200, ge=1, description="smaller windows are judged with the ones before them")
    pattern_capacity: int = Field(default=256, ge=16)
    max_open_windows: int = Field(default=64, ge=1, description="bounds memory when event times jump around")
    group_max_batches: int = Field(default=64, ge=1, description="batches handled per window update under load")
    group_within_s: float = Field(default=0.02, gt=0, description="longest a batch waits for others to join it")

    @model_validator(mode="after")
    def _step_divides(self) -> TelemetrySettings:
        if self.step_s > self.window_s:
            raise ValueError(f"step_s={self.step_s} must not exceed window_s={self.window_s} (gaps between windows)")
        return self

    @property
    def window_kind(self) -> str:
        return "tumbling" if self.step_s == self.window_s else "hopping"
