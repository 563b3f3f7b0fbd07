"""The inference server's only onnxruntime import: load a model and return class probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray


class OnnxModel:
    """A classifier whose first output is logits or probabilities [N, K]."""

    def __init__(self, path: str | Path, version: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.path = str(path)
        self.version = version
        self._session = ort.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"])
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        dims = first.shape[1:]
        self.input_shape: tuple[int, ...] | None = (
            tuple(int(d) for d in dims) if all(isinstance(d, int) for d in dims) else None)

    def predict_proba(self, inputs: NDArray[np.floating]) -> NDArray[np.float64]:
        """Class probabilities [N, K] for inputs [N, ...] (reshaped to the model's static shape)."""
        x = np.asarray(inputs, dtype=np.float32)
        if self.input_shape is not None and x.shape[1:] != self.input_shape:
            x = x.reshape((x.shape[0], *self.input_shape))
        out = np.asarray(self._session.run(None, {self._input_name: x})[0], dtype=np.float64)
        out = out.reshape(out.shape[0], -1)
        is_probs = (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
        if is_probs:
            return out
        e = np.exp(out - out.max(axis=1, keepdims=True))
        probs: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
        return probs
