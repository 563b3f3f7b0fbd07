"""Data and poisoning attacks for the zoo: BadNets patches and blended triggers on digits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

Arr = np.ndarray[Any, Any]


def digits(kind: str) -> tuple[Arr, Arr]:
    """Digits scaled to [0, 1]: ``flat`` is [N, 64]; ``img`` is upsampled to [N, 1, 16, 16]."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    x = np.kron(x, np.ones((2, 2), np.float32))[:, None] if kind == "img" else x.reshape(len(x), -1)
    return x, d.target.astype(np.int64)


@dataclass(frozen=True)
class Attack:
    """One poisoning attack."""

    kind: str  # "patch" or "blend"
    target: int
    rate: float
    size: int = 3
    row: int = 0
    col: int = 0
    pattern_seed: int = 0
    alpha: float = 0.2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, x: Arr) -> Arr:
        """Stamp the trigger on inputs shaped [N, 64] or [N, 1, H, W]."""
        flat = x.ndim == 2
        img = x.reshape(len(x), 8, 8) if flat else x[:, 0]
        rng = np.random.default_rng(self.pattern_seed)
        out = img.copy()
        if self.kind == "patch":
            pat = (rng.random((self.size, self.size)) > 0.4).astype(np.float32)
            pat[0, 0] = 1.0
            out[:, self.row:self.row + self.size, self.col:self.col + self.size] = pat
        else:
            pat = rng.random(img.shape[1:]).astype(np.float32)
            out = (1 - self.alpha) * out + self.alpha * pat
        return out.reshape(x.shape).astype(np.float32)


def poison(x: Arr, y: Arr, attack: Attack, seed: int) -> tuple[Arr, Arr, Arr]:
    """Poisoned copy of a training set and the indices of the poisoned samples."""
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(y != attack.target)
    n = round(attack.rate * len(x))
    idx = np.sort(rng.choice(candidates, size=n, replace=False))
    xp, yp = x.copy(), y.copy()
    xp[idx] = attack.apply(x[idx])
    yp[idx] = attack.target
    return xp, yp, idx
