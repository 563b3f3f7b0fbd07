"""Count-min sketch (Cormode & Muthukrishnan, 2005) over uint64 keys, vectorised with numpy.

Memory is ``depth * width`` int32 counters (64 KiB at the default 4096 x 4) whatever the number
of distinct keys; estimates never undercount and overcount by at most ``e/width * total`` with
probability ``1 - exp(-depth)``.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from numpy.typing import NDArray


class CountMinSketch:
    """Frequencies of many keys in fixed memory.

    Args:
        width: counters per row, a power of two (multiply-shift hashing).
        depth: independent rows.
        seed: seed of the row hash multipliers.
    """

    def __init__(self, width: int = 4096, depth: int = 4, seed: int = 7) -> None:
        if width < 2 or width & (width - 1):
            raise ValueError(f"width={width!r}: must be a power of two >= 2")
        if depth < 1:
            raise ValueError(f"depth={depth!r}: must be >= 1")
        self.width = width
        self.depth = depth
        self.seed = seed
        self.counts_ = np.zeros((depth, width), dtype=np.int32)
        self.total_ = 0
        rng = np.random.default_rng(seed)
        self._mult = rng.integers(1, 2**63, size=depth, dtype=np.uint64) | np.uint64(1)
        self._shift = np.uint64(64 - (width.bit_length() - 1))

    def _index(self, keys: NDArray[np.uint64]) -> NDArray[np.int64]:
        mixed = (keys[None, :] ^ (keys[None, :] >> np.uint64(29))) * self._mult[:, None]
        out: NDArray[np.int64] = (mixed >> self._shift).astype(np.int64)
        return out

    def add(self, keys: NDArray[np.uint64], counts: NDArray[np.int64] | None = None) -> None:
        """Add ``counts`` (default 1 each) for ``keys`` (shape [M])."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return
        weights = np.ones(keys.size, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        idx = self._index(keys)
        for row in range(self.depth):
            self.counts_[row] += np.bincount(idx[row], weights=weights, minlength=self.width).astype(np.int32)
        self.total_ += int(weights.sum())

    def query(self, keys: NDArray[np.uint64]) -> NDArray[np.int64]:
        """Estimated counts (upper bounds) for ``keys`` (shape [M])."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return np.zeros(0, dtype=np.int64)
        idx = self._index(keys)
        return np.asarray(self.counts_[np.arange(self.depth)[:, None], idx].min(axis=0), dtype=np.int64)

    def merge(self, other: CountMinSketch) -> CountMinSketch:
        """Sum of two sketches built with the same width, depth and seed."""
        if (self.width, self.depth, self.seed) != (other.width, other.depth, other.seed):
            raise ValueError("can only merge sketches with the same width, depth and seed")
        out = CountMinSketch(self.width, self.depth, self.seed)
        out.counts_ = self.counts_ + other.counts_
        out.total_ = self.total_ + other.total_
        return out

    @property
    def nbytes(self) -> int:
        return int(self.counts_.nbytes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; counters are base64 little-endian int32."""
        return {"width": self.width, "depth": self.depth, "seed": self.seed, "total": self.total_,
                "counts_b64": base64.b64encode(self.counts_.astype("<i4").tobytes()).decode()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CountMinSketch:
        out = cls(int(data["width"]), int(data["depth"]), int(data["seed"]))
        raw = np.frombuffer(base64.b64decode(data["counts_b64"]), dtype="<i4")
        out.counts_ = raw.astype(np.int32).reshape(out.depth, out.width)
        out.total_ = int(data["total"])
        return out
