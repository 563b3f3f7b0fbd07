"""Does an image input look channels-last? Pure.

The scanner reads a 3-D input as [C, H, W] (ONNX's and PyTorch's layout): trigger masks cover the last
two axes and are shared across the first. A model exported from a channels-last framework (Keras through
tf2onnx, [N, H, W, C]) breaks that assumption: its masks would cover [W, C] and be shared across rows,
so patch triggers are searched in the wrong plane and may be missed. Until the scanner transposes such
inputs itself, the verdict says so rather than staying silent.
"""

from __future__ import annotations

from collections.abc import Sequence

CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA


def looks_channels_last(input_shape: Sequence[int]) -> bool:
    """True for a 3-D input whose last axis, not its first, has the size of a channel axis."""
    if len(input_shape) != 3:
        return False
    first, last = input_shape[0], input_shape[-1]
    return last in CHANNEL_COUNTS and first not in CHANNEL_COUNTS and min(input_shape[:2]) > 4


def layout_note(input_shape: Sequence[int]) -> str | None:
    """A line for the report when the input looks channels-last, else ``None``."""
    if not looks_channels_last(input_shape):
        return None
    h, w, c = input_shape
    return (f"the input [{h}, {w}, {c}] looks channels-last; the scanner reads images as [C, H, W], so its "
            f"trigger masks cover the last two axes: export the model channels-first (e.g. tf2onnx "
            f"--inputs-as-nchw) for a calibrated verdict")
