"""FastAPI app factory: ``/predict``, ``/healthz`` and a runtime model swap for rollbacks."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Header, HTTPException
from fastapi.concurrency import run_in_threadpool
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from services.inference_server.onnx_model import OnnxModel
from services.inference_server.strip_guard import ServingStripGuard
from services.telemetry.client import TelemetryClient


class PredictRequest(BaseModel):
    inputs: list[list[float]] = Field(min_length=1, max_length=4096)
    ids: list[str] | None = None


class PredictResponse(BaseModel):
    predictions: list[int]
    probabilities: list[list[float]]
    ids: list[str]
    model: str
    version: str


class SwapRequest(BaseModel):
    model_path: str
    version: str


class _Serving:
    """The model version being served; swapped atomically under a lock."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.diverted: str | None = None  # set when no safe version exists: refuse rather than serve it


class DivertRequest(BaseModel):
    model: str | None = None
    reason: str = ""


def create_app(model_path: str | Path, model_name: str, version: str, telemetry_client: TelemetryClient,
               *, admin_token: str | None = None, strip_clean: NDArray[np.floating] | None = None,
               strip_perturbations: int = 8) -> FastAPI:
    """Build the server; the telemetry client is started and stopped with the app.

    Args:
        model_path: ONNX classifier (first output logits or probabilities [N, K]).
        model_name: name reported to telemetry (the Kafka key).
        version: version served at start.
        telemetry_client: embedded producer; ``record`` is called on every request.
        admin_token: if set, ``POST /admin/model`` requires header ``X-Admin-Token`` to equal it.
        strip_clean: clean inputs; when given, the client sends each prediction's STRIP entropy computed
            with the model being served (the telemetry service's runtime STRIP signal).
        strip_perturbations: blends per input for STRIP.
    """
    serving = _Serving(OnnxModel(model_path, version))
    if strip_clean is not None:
        telemetry_client.strip_guard = ServingStripGuard(lambda: serving.model, strip_clean, strip_perturbations)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await telemetry_client.start()
        try:
            yield
        finally:
            await telemetry_client.stop()

    app = FastAPI(title="bdguard reference inference server", lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "model": model_name, "version": serving.model.version,
                "telemetry": telemetry_client.metrics.as_dict()}

    @app.post("/predict", response_model=PredictResponse)
    def predict(req: PredictRequest) -> PredictResponse:
        if req.ids is not None and len(req.ids) != len(req.inputs):
            raise HTTPException(422, f"{len(req.ids)} ids for {len(req.inputs)} inputs")
        if serving.diverted is not None:
            raise HTTPException(503, f"traffic diverted from {model_name}: {serving.diverted}")
        model = serving.model  # one version for the whole request, even during a swap
        x = np.asarray(req.inputs, dtype=np.float32)
        try:
            probs = model.predict_proba(x)
        except Exception as exc:
            raise HTTPException(422, f"model rejected the inputs: {exc}") from exc
        inputs = x if model.input_shape is None else x.reshape((x.shape[0], *model.input_shape))
        ids = telemetry_client.record(model_name, model.version, inputs, probs, req.ids)
        return PredictResponse(predictions=probs.argmax(axis=1).tolist(), probabilities=probs.tolist(),
                               ids=ids, model=model_name, version=model.version)

    @app.post("/admin/model")
    async def swap_model(req: SwapRequest,
                         x_admin_token: Annotated[str | None, Header()] = None) -> dict[str, str]:
        if admin_token is not None and x_admin_token != admin_token:
            raise HTTPException(403, "bad or missing X-Admin-Token")
        try:
            new = await run_in_threadpool(OnnxModel, req.model_path, req.version)
        except Exception as exc:
            raise HTTPException(400, f"cannot load {req.model_path!r}: {exc}") from exc
        with serving.lock:
            previous, serving.model, serving.diverted = serving.model.version, new, None
        return {"model": model_name, "version": new.version, "previous_version": previous}

    @app.post("/admin/divert")
    def divert(req: DivertRequest, x_admin_token: Annotated[str | None, Header()] = None) -> dict[str, str]:
        """No safe version to roll back to: stop serving this model (callers get 503 and fall back)."""
        if admin_token is not None and x_admin_token != admin_token:
            raise HTTPException(403, "bad or missing X-Admin-Token")
        serving.diverted = req.reason or "no safe version"
        return {"model": model_name, "diverted": serving.diverted}

    return app
