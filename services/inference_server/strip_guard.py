"""The scanner's STRIP guard on the model being served: one entropy per input, sent with telemetry.

Fitted lazily per served version (a rollback swaps the model; the next batch fits the guard to the new
one). Entropies are computed by the telemetry client off the request path, so a prediction answered
just before a swap may be scored with the new version: a few predictions at a swap, nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from services.inference_server.onnx_model import OnnxModel
from services.scanner.domain.detectors.strip import StripGuard
from services.scanner.domain.model import ModelHandle

MAX_FITTED_VERSIONS = 4


class _Handle:
    """What the STRIP guard calls: probabilities of a batch."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def predict(self, x: NDArray[np.floating]) -> NDArray[np.float64]:
        return self.model.predict_proba(x)


class ServingStripGuard:
    def __init__(self, serving_model: Callable[[], OnnxModel], clean: NDArray[np.floating],
                 n_perturbations: int = 8) -> None:
        if len(clean) < 16:
            raise ValueError(f"STRIP needs clean samples to blend with; got {len(clean)}")
        self.serving_model, self.clean, self.n_perturbations = serving_model, clean.astype(np.float32), n_perturbations
        self._guards: dict[int, StripGuard] = {}
        self._lock = threading.Lock()

    def __call__(self, inputs: NDArray[np.floating]) -> NDArray[np.float64]:
        model = self.serving_model()
        with self._lock:
            guard = self._guards.get(id(model))
            if guard is None:
                clean = self.clean.reshape((len(self.clean), *inputs.shape[1:]))
                handle = cast(ModelHandle, _Handle(model))  # the guard only calls predict
                guard = StripGuard(n_perturbations=self.n_perturbations).fit(handle, clean)
                if len(self._guards) >= MAX_FITTED_VERSIONS:
                    self._guards.pop(next(iter(self._guards)))
                self._guards[id(model)] = guard
            return np.asarray(guard.entropy(np.asarray(inputs, dtype=np.float32)), dtype=np.float64)


def load_clean_inputs(path: Path) -> NDArray[np.float32]:
    """The ``x`` array of a clean ``.npz`` (never unpickled)."""
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data:
            raise ValueError(f"{path}: no 'x' array")
        return np.asarray(data["x"], dtype=np.float32)
