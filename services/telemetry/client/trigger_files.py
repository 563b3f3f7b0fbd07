"""Load the scanner's reversed triggers (``*.triggers.npz``) into a trigger library for the client."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.telemetry.domain.triggers import TriggerLibrary, TriggerPattern

_KEY = re.compile(r"^mask_(\d+)$")


def load_trigger_library(paths: Sequence[Path], *, tolerance: float = 0.25,
                         max_patterns: int = 1000) -> TriggerLibrary:
    """Every ``mask_<c>``/``pattern_<c>`` pair of every file; masks over H×W are spread over channels.

    Raises ``ValueError`` naming the file for anything that is not such an npz (no pickles loaded).
    """
    library = TriggerLibrary(max_patterns=max_patterns, tolerance=tolerance)
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as data:
                pairs = {int(m.group(1)): (data[k], data[f"pattern_{m.group(1)}"])
                         for k in data.files if (m := _KEY.match(k))}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a trigger file ({exc})") from exc
        for cls, (mask, pattern) in sorted(pairs.items()):
            full_mask = np.broadcast_to(mask, pattern.shape).astype(np.float32)
            source = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            library.add(TriggerPattern(f"t{source}-c{cls}", full_mask,
                                       pattern.astype(np.float32), target_class=cls))
    return library
