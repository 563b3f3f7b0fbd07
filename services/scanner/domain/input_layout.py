"""Channels-last image inputs, scanned as channels-first. Pure (numpy only).

The detectors read a 3-D input as [C, H, W] (ONNX's and PyTorch's layout): trigger masks cover the last
two axes and are shared across the first. A model exported from a channels-last framework (Keras through
tf2onnx, [N, H, W, C]) breaks that assumption: its masks would cover [W, C] and be shared across rows, so
patch triggers would be searched in the wrong plane. Such a model is scanned through
:class:`ChannelsFirstView`, which shows it to the detectors as [C, H, W] and transposes inputs, gradients
and data at the boundary; the triggers it finds are turned back into the model's own layout for the
files other services stamp onto live inputs (:func:`trigger_in_model_layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.scanner.domain.model import Cotangent, Dataset, FloatArray, ModelHandle

CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA
CHANNELS_FIRST, CHANNELS_LAST, FLAT = "channels_first", "channels_last", "flat"
LAYOUTS = ("auto", CHANNELS_FIRST, CHANNELS_LAST)
_TO_FIRST, _TO_LAST = (0, 3, 1, 2), (0, 2, 3, 1)


def looks_channels_last(input_shape: Sequence[int]) -> bool:
    """True for a 3-D input whose last axis, not its first, has the size of a channel axis."""
    if len(input_shape) != 3:
        return False
    first, last = input_shape[0], input_shape[-1]
    return last in CHANNEL_COUNTS and first not in CHANNEL_COUNTS and min(input_shape[:2]) > 4


def resolve_layout(input_shape: Sequence[int], requested: str = "auto") -> str:
    """The layout a scan reads the input in: ``flat`` for anything but a 3-D input; ``auto`` tells
    channels-last from where the channel-sized axis is, and a caller may say which it is."""
    if requested not in LAYOUTS:
        raise ValueError(f"unknown input layout {requested!r}; use one of {', '.join(LAYOUTS)}")
    if len(input_shape) != 3:
        return FLAT
    if requested != "auto":
        return requested
    return CHANNELS_LAST if looks_channels_last(input_shape) else CHANNELS_FIRST


def layout_note(input_shape: Sequence[int], layout: str) -> str | None:
    """A line for the report when a channels-last input was scanned transposed, else ``None``."""
    if layout != CHANNELS_LAST:
        return None
    h, w, c = input_shape
    return (f"the input [{h}, {w}, {c}] is channels-last: it was scanned as [{c}, {h}, {w}] (masks over the "
            f"{h}x{w} image, shared by the {c} channels); the trigger files are written in the model's layout")


class ChannelsFirstView:
    """A channels-last classifier shown to the detectors as channels-first (a ``ModelHandle``)."""

    def __init__(self, inner: ModelHandle) -> None:
        if len(inner.input_shape) != 3:
            raise ValueError(f"a channels-last view needs an [H, W, C] input, not {inner.input_shape}")
        h, w, c = inner.input_shape
        self.inner = inner
        self.input_shape: tuple[int, ...] = (c, h, w)
        self.num_classes = inner.num_classes
        self.exact_gradients = inner.exact_gradients
        for extra in ("macs_per_sample", "gradient_passes", "gradient_note"):  # read with getattr if present
            if hasattr(inner, extra):
                setattr(self, extra, getattr(inner, extra))

    def predict(self, x: FloatArray) -> FloatArray:
        return self.inner.predict(to_channels_last(x))

    def layers(self) -> Sequence[str]:
        return self.inner.layers()

    def activations(self, x: FloatArray, layer: str) -> FloatArray:
        return self.inner.activations(to_channels_last(x), layer)

    def value_and_grad(self, x: FloatArray, cotangent: Cotangent) -> tuple[FloatArray, FloatArray]:
        z, g = self.inner.value_and_grad(to_channels_last(x), cotangent)
        return z, to_channels_first(g)


def to_channels_first(x: np.ndarray[Any, Any]) -> FloatArray:
    """[N, H, W, C] -> [N, C, H, W], contiguous."""
    return np.ascontiguousarray(np.transpose(x, _TO_FIRST), dtype=np.float32)


def to_channels_last(x: np.ndarray[Any, Any]) -> FloatArray:
    """[N, C, H, W] -> [N, H, W, C], contiguous."""
    return np.ascontiguousarray(np.transpose(x, _TO_LAST), dtype=np.float32)


def view_for_scan(model: ModelHandle, data: Dataset, requested: str = "auto") -> tuple[ModelHandle, Dataset, str]:
    """The model and data as the detectors should see them, and the layout that was resolved."""
    layout = resolve_layout(model.input_shape, requested)
    if layout != CHANNELS_LAST:
        return model, data, layout
    return ChannelsFirstView(model), Dataset(to_channels_first(data.x), data.y), layout


def trigger_in_model_layout(mask: np.ndarray[Any, Any], pattern: np.ndarray[Any, Any],
                            layout: str) -> tuple[FloatArray, FloatArray]:
    """A reversed trigger (mask [H, W], pattern [C, H, W] as the detectors keep them) in the layout of the
    model's input; for channels-last both become [H, W, C] (the mask repeated over the channels)."""
    m, p = np.asarray(mask, np.float32), np.asarray(pattern, np.float32)
    if layout != CHANNELS_LAST:
        return m, p
    p_last = np.ascontiguousarray(np.transpose(p, (1, 2, 0)))
    return np.ascontiguousarray(np.broadcast_to(m.reshape(*p_last.shape[:2], 1), p_last.shape)), p_last
