"""Trigger-pattern library: reversed triggers from the scanner, matched against live inputs.

A pattern is a ``mask`` (weights in [0, 1], input-shaped) and a ``pattern`` (input-shaped): the
stamped input is ``(1 - mask) * x + mask * pattern`` (Neural Cleanse, Wang et al., S&P 2019). An
input matches when its mask-weighted RMS distance to ``pattern`` is at most ``tolerance`` times the
input's own value range. All patterns are matched at once with two matrix products
(||x - p||^2_m = m.x^2 - 2 (m*p).x + m.p^2), so 1,000 patterns cost two [N,D]x[D,P] products.

Limits: only triggers that are a fixed stamp are matched; blended triggers with small mask weights,
input-specific and warping triggers are not; a reversed trigger is an approximation of the real one,
so the tolerance trades misses against false matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class TriggerPattern:
    """One reversed trigger; ``mask`` and ``pattern`` have the model's input shape (no batch axis)."""

    pattern_id: str
    mask: NDArray[np.float32]
    pattern: NDArray[np.float32]
    target_class: int | None = None

    def __post_init__(self) -> None:
        if self.mask.shape != self.pattern.shape:
            raise ValueError(f"mask shape {self.mask.shape!r} != pattern shape {self.pattern.shape!r}")
        if not self.pattern_id or "!" in self.pattern_id:
            raise ValueError(f"pattern_id={self.pattern_id!r}: must be non-empty and contain no '!'")
        if float(np.asarray(self.mask).sum()) < 1.0 or np.asarray(self.mask).min() < 0:
            raise ValueError(f"pattern {self.pattern_id!r}: mask must be >= 0 with total weight >= 1")


class TriggerLibrary:
    """Up to ``max_patterns`` trigger patterns of one input shape, matched vectorised."""

    def __init__(self, max_patterns: int = 1000, tolerance: float = 0.1) -> None:
        if not 1 <= max_patterns <= 10_000:
            raise ValueError(f"max_patterns={max_patterns!r}: need 1..10000")
        if tolerance <= 0:
            raise ValueError(f"tolerance={tolerance!r}: must be > 0")
        self.max_patterns = max_patterns
        self.tolerance = tolerance
        self._ids: list[str] = []
        self._shape: tuple[int, ...] | None = None
        self._m = np.zeros((0, 0), dtype=np.float32)
        self._mp = np.zeros((0, 0), dtype=np.float32)
        self._mpp = np.zeros(0, dtype=np.float32)
        self._msum = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, trigger: TriggerPattern) -> None:
        """Add or replace (same id) a pattern; raises ``ValueError`` when full or of another shape."""
        shape = tuple(trigger.mask.shape)
        if self._shape is not None and shape != self._shape:
            raise ValueError(f"pattern shape {shape!r} differs from the library's {self._shape!r}")
        m = np.asarray(trigger.mask, dtype=np.float32).ravel()
        p = np.asarray(trigger.pattern, dtype=np.float32).ravel()
        rows = (m, m * p, float((m * p * p).sum()), float(m.sum()))
        if trigger.pattern_id in self._ids:
            self.remove(trigger.pattern_id)
        if len(self._ids) >= self.max_patterns:
            raise ValueError(f"library full: max_patterns={self.max_patterns}")
        self._shape = shape
        self._m = np.vstack([self._m.reshape(-1, m.size), m])
        self._mp = np.vstack([self._mp.reshape(-1, m.size), rows[1]])
        self._mpp = np.append(self._mpp, rows[2]).astype(np.float32)
        self._msum = np.append(self._msum, rows[3]).astype(np.float32)
        self._ids.append(trigger.pattern_id)

    def remove(self, pattern_id: str) -> None:
        i = self._ids.index(pattern_id)
        self._ids.pop(i)
        self._m, self._mp = np.delete(self._m, i, axis=0), np.delete(self._mp, i, axis=0)
        self._mpp, self._msum = np.delete(self._mpp, i), np.delete(self._msum, i)

    def match(self, inputs: NDArray[np.floating]) -> list[str]:
        """Best-matching pattern id per input, or "" when none is within tolerance.

        Args:
            inputs: batch [N, *input_shape].
        """
        x = np.asarray(inputs, dtype=np.float32)
        n = x.shape[0]
        if not self._ids or n == 0:
            return [""] * n
        if tuple(x.shape[1:]) != self._shape:
            raise ValueError(f"inputs of shape {x.shape[1:]!r}; library patterns are {self._shape!r}")
        flat = x.reshape(n, -1)
        d2 = (flat * flat) @ self._m.T - 2.0 * (flat @ self._mp.T) + self._mpp
        rms = np.sqrt(np.maximum(d2, 0.0) / self._msum)
        span = np.maximum(flat.max(axis=1) - flat.min(axis=1), 1e-12)[:, None]
        score = rms / span
        best = score.argmin(axis=1)
        hit = score[np.arange(n), best] <= self.tolerance
        return [self._ids[b] if h else "" for b, h in zip(best.tolist(), hit.tolist(), strict=True)]
