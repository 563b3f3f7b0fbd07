"""Load the scanner's reversed triggers (``*.triggers.npz``) into a trigger library for the client."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.telemetry.domain.triggers import TriggerLibrary, TriggerPattern

_KEY = re.compile(r"^mask_(\d+|universal)$")


def load_trigger_library(paths: Sequence[Path], *, tolerance: float = 0.25,
                         max_patterns: int = 1000) -> TriggerLibrary:
    """Every ``mask_<c>``/``pattern_<c>`` pair of every file; masks over H×W are spread over channels.
    ``mask_universal``/``pattern_universal`` (an all-to-all backdoor's trigger) marks inputs with no class.
    Masks of total weight below one (a faint whole-image blend) are left out: nothing could match them.

    Raises ``ValueError`` naming the file for anything that is not such an npz (no pickles loaded).
    """
    library = TriggerLibrary(max_patterns=max_patterns, tolerance=tolerance)
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as data:
                pairs = {m.group(1): (data[k], data[f"pattern_{m.group(1)}"])
                         for k in data.files if (m := _KEY.match(k))}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a trigger file ({exc})") from exc
        for name, (mask, pattern) in sorted(pairs.items()):
            full_mask = np.broadcast_to(mask, pattern.shape).astype(np.float32)
            if float(full_mask.sum()) < 1.0:  # a faint blend (below one pixel's weight) cannot be matched
                continue
            source = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            cls = None if name == "universal" else int(name)
            library.add(TriggerPattern(f"t{source}-c{name}", full_mask,
                                       pattern.astype(np.float32), target_class=cls))
    return library
