"""Settings of the reference inference server (``BDGUARD_INFERENCE_*`` environment variables)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class InferenceServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BDGUARD_INFERENCE_", extra="ignore",
                                      protected_namespaces=())

    model_path: str
    model_name: str
    model_version: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    trigger_files: list[str] = []  # the scanner's *.triggers.npz: inputs matching them are marked
    trigger_tolerance: float = 0.25  # reversed triggers are approximations: 0.1 matched none, 0.25 ~90% (demo)
    strip_clean_data: str | None = None  # clean .npz: run the STRIP guard and send each input's entropy
    strip_perturbations: int = 8
