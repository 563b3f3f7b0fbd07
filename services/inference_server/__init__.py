"""Reference inference server: FastAPI + onnxruntime, reporting every prediction to telemetry."""

from services.inference_server.app import create_app

__all__ = ["create_app"]
