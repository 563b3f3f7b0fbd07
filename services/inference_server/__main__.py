"""``python -m services.inference_server``: serve the model named by ``BDGUARD_INFERENCE_*``."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from services.inference_server.app import create_app
from services.inference_server.config import InferenceServerSettings
from services.inference_server.strip_guard import load_clean_inputs
from services.telemetry.client import TelemetryClient, TelemetrySettings
from services.telemetry.client.trigger_files import load_trigger_library


def main() -> None:
    settings = InferenceServerSettings()  # type: ignore[call-arg]  # fields come from the environment
    library = (load_trigger_library([Path(p) for p in settings.trigger_files], tolerance=settings.trigger_tolerance)
               if settings.trigger_files else None)
    strip_clean = load_clean_inputs(Path(settings.strip_clean_data)) if settings.strip_clean_data else None
    app = create_app(settings.model_path, settings.model_name, settings.model_version,
                     TelemetryClient(TelemetrySettings(), trigger_library=library), admin_token=settings.admin_token,
                     strip_clean=strip_clean, strip_perturbations=settings.strip_perturbations)
    uvicorn.run(app, host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
