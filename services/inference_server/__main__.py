"""``python -m services.inference_server``: serve the model named by ``BDGUARD_INFERENCE_*``."""

from __future__ import annotations

import uvicorn

from services.inference_server.app import create_app
from services.inference_server.config import InferenceServerSettings
from services.telemetry.client import TelemetryClient, TelemetrySettings


def main() -> None:
    settings = InferenceServerSettings()  # type: ignore[call-arg]  # fields come from the environment
    app = create_app(settings.model_path, settings.model_name, settings.model_version,
                     TelemetryClient(TelemetrySettings()), admin_token=settings.admin_token)
    uvicorn.run(app, host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
