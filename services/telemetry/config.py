"""Telemetry analysis settings (env prefix ``BDGUARD_TELEMETRY_``)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MIN_IDLE_CLOSE_S = 10.0  # the default idle close waits at least this long, however small the lateness


class TelemetrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_TELEMETRY_", env_file=".env", extra="ignore")

    window_s: float = Field(default=10.0, gt=0, description="window length (event time)")
    step_s: float = Field(default=10.0, gt=0, description="hop; equal to window_s gives tumbling windows")
    lateness_s: float = Field(default=2.0, ge=0, description="how long a window waits for late predictions")
    baseline_size: int = Field(default=10_000, ge=100, description="first N predictions form the baseline")
    baseline_refresh_s: float = Field(default=0.0, ge=0, description="re-learn the baseline (604800 = weekly)")
    early_eval_s: float = Field(default=0.25, ge=0, description="re-evaluate an open window at most this often")
    min_judged: int = Field(default=200, ge=1, description="smaller windows are judged with the ones before them")
    campaign_s: float = Field(default=600.0, ge=0, description="backdoor findings are also judged over the closed "
                              "windows of this span summed (thin campaigns); 0 = off; tumbling windows only")
    inherit_baseline: bool = Field(default=True, description="a new model version is judged against its model's "
                                   "latest learnt baseline until its own is learnt from traffic that raises no "
                                   "backdoor alert (a campaign starting with a release is not learnt as normal)")
    pattern_capacity: int = Field(default=256, ge=16)
    max_open_windows: int = Field(default=64, ge=1, description="bounds memory when event times jump around")
    group_max_batches: int = Field(default=64, ge=1, description="batches handled per window update under load")
    group_within_s: float = Field(default=0.02, gt=0, description="longest a batch waits for others to join it")
    idle_close_s: float | None = Field(
        default=None, ge=0, description="close the due windows of a model version that has sent nothing for this "
        "long (processing time), as if event time had moved on with the clock; default 5 x lateness_s, at least "
        f"{MIN_IDLE_CLOSE_S:g} s; 0 = never")

    @model_validator(mode="after")
    def _step_divides(self) -> TelemetrySettings:
        if self.step_s > self.window_s:
            raise ValueError(f"step_s={self.step_s} must not exceed window_s={self.window_s} (gaps between windows)")
        return self

    @property
    def idle_close_after_s(self) -> float:
        """``idle_close_s``, or its default: a few multiples of the lateness (a silence that long is no
        longer out-of-order delivery), but never less than ``MIN_IDLE_CLOSE_S``."""
        return max(5 * self.lateness_s, MIN_IDLE_CLOSE_S) if self.idle_close_s is None else self.idle_close_s

    @property
    def idle_sweep_s(self) -> float:
        """How often the idle sweep runs: a quarter of the idle time, between 0.1 and 5 s."""
        return min(max(self.idle_close_after_s / 4, 0.1), 5.0)

    @property
    def window_kind(self) -> str:
        return "tumbling" if self.step_s == self.window_s else "hopping"
