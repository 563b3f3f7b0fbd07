"""Data and poisoning attacks for the zoo on digits.

The main zoo uses BadNets patches and blended triggers. The holdout zoo adds kinds the detectors were
never tuned on: ``sig`` (a sinusoidal signal added to the whole image, Barni et al. 2019), ``frame``
(thin lines along two borders), ``dispersed`` (a few scattered pixels) and ``warp`` (a fixed smooth
geometric warp, WaNet-like, Nguyen & Tran 2021).

Any kind can be made *source-specific* (``source`` set; TaCT, Tang et al. USENIX Security 2021): only
inputs of the source class are relabelled to the target, and as many inputs of other classes carry the
trigger with their own label ("cover"), so the trigger works from one class only. Defences that look for
a trigger taking *every* class to the target (Neural Cleanse, MM-BD's margins, STRIP) are known to miss it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

Arr = np.ndarray[Any, Any]


def digits(kind: str) -> tuple[Arr, Arr]:
    """Digits scaled to [0, 1]: ``flat`` is [N, 64]; ``img`` is upsampled to [N, 1, 16, 16]; ``rgb`` to
    [N, 3, 32, 32], each digit in a random colour on a random dark background, with pixel noise."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    if kind == "rgb":
        rng = np.random.default_rng(7)
        big = np.kron(x, np.ones((4, 4), np.float32))[:, None]
        fg, bg = rng.uniform(0.6, 1.0, (len(x), 3, 1, 1)), rng.uniform(0.0, 0.25, (len(x), 3, 1, 1))
        rgb = bg + (fg - bg) * big + rng.normal(0.0, 0.03, (len(x), 3, 32, 32))
        return np.clip(rgb, 0.0, 1.0).astype(np.float32), y
    x = np.kron(x, np.ones((2, 2), np.float32))[:, None] if kind == "img" else x.reshape(len(x), -1)
    return x, y


@dataclass(frozen=True)
class Attack:
    """One poisoning attack."""

    kind: str  # "patch", "blend", "sig", "frame", "dispersed", "warp", "noise" or "gamma"
    target: int
    rate: float
    size: int = 3
    row: int = 0
    col: int = 0
    pattern_seed: int = 0
    alpha: float = 0.2
    source: int | None = None  # source-specific (TaCT): only this class is taken to the target
    all_to_all: bool = False  # every class c is taken to c + 1 (``target`` is unused)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, x: Arr) -> Arr:
        """Stamp the trigger on inputs shaped [N, side * side] (flattened square images) or [N, C, H, W] (the same
        on every channel)."""
        flat = x.ndim == 2
        side = math.isqrt(x.shape[1]) if flat else 0
        img = x.reshape(len(x), side, side) if flat else x.reshape(-1, *x.shape[-2:])
        rng = np.random.default_rng(self.pattern_seed)
        out: Arr = np.clip(_STAMPS[self.kind](self, img.copy(), rng), 0.0, 1.0)
        return out.reshape(x.shape).astype(np.float32)


def _patch(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    pat = (rng.random((a.size, a.size)) > 0.4).astype(np.float32)
    pat[0, 0] = 1.0
    img[:, a.row:a.row + a.size, a.col:a.col + a.size] = pat
    return img


def _blend(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    out: Arr = (1 - a.alpha) * img + a.alpha * rng.random(img.shape[1:]).astype(np.float32)
    return out


def _sig(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    w = img.shape[-1]
    wave = a.alpha * np.sin(2 * np.pi * np.arange(w) * a.size / w + rng.uniform(0, np.pi))
    out: Arr = img + wave[None, None, :]
    return out


def _frame(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    t = max(1, a.size)
    rows = slice(0, t) if a.row == 0 else slice(img.shape[1] - t, None)
    cols = slice(0, t) if a.col == 0 else slice(img.shape[2] - t, None)
    img[:, rows, :] = 1.0
    img[:, :, cols] = 1.0
    return img


def _dispersed(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    h, w = img.shape[1:]
    cells = rng.choice(h * w, size=a.size, replace=False)
    img[:, cells // w, cells % w] = 1.0
    return img


def _warp(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    """Bilinear resampling along a fixed smooth random flow of at most ``alpha`` x side pixels."""
    h, w = img.shape[1:]
    grid = rng.uniform(-1, 1, (2, 4, 4))
    flow = np.stack([_upsample(g, h, w) for g in grid])
    flow *= a.alpha * max(h, w) / max(float(np.abs(flow).max()), 1e-6)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sy, sx = np.clip(yy + flow[0], 0, h - 1), np.clip(xx + flow[1], 0, w - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    out: Arr = ((1 - fy) * (1 - fx) * img[:, y0, x0] + (1 - fy) * fx * img[:, y0, x1]
                + fy * (1 - fx) * img[:, y1, x0] + fy * fx * img[:, y1, x1])
    return out


def _noise(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    """A fixed random perturbation of at most ``alpha`` added to every pixel (an "invisible" trigger)."""
    out: Arr = img + a.alpha * rng.uniform(-1, 1, img.shape[1:]).astype(np.float32)
    return out


def _gamma(a: Attack, img: Arr, rng: np.random.Generator) -> Arr:
    """A global intensity curve, x -> x ** alpha: no pixel is stamped, every one is moved."""
    out: Arr = np.power(np.clip(img, 0.0, 1.0), a.alpha)
    return out


def _upsample(g: Arr, h: int, w: int) -> Arr:
    ys, xs = np.linspace(0, g.shape[0] - 1, h), np.linspace(0, g.shape[1] - 1, w)
    rows = np.stack([np.interp(xs, np.arange(g.shape[1]), r) for r in g])
    out: Arr = np.stack([np.interp(ys, np.arange(g.shape[0]), c) for c in rows.T], axis=1)
    return out


_STAMPS = {"patch": _patch, "blend": _blend, "sig": _sig, "frame": _frame, "dispersed": _dispersed, "warp": _warp,
           "noise": _noise, "gamma": _gamma}


def attack_labels(attack: Attack, y: Arr, k: int) -> Arr:
    """The labels a triggered input of label ``y`` is taken to."""
    out: Arr = (y + 1) % k if attack.all_to_all else np.full_like(y, attack.target)
    return out


def poison(x: Arr, y: Arr, attack: Attack, seed: int) -> tuple[Arr, Arr, Arr]:
    """Poisoned copy of a training set and the indices of the poisoned (relabelled) samples. A
    source-specific attack also stamps as many cover inputs of the other classes, keeping their labels."""
    rng = np.random.default_rng(seed)
    pool = (np.ones(len(y), bool) if attack.all_to_all else y == attack.source if attack.source is not None
            else y != attack.target)
    candidates = np.flatnonzero(pool)
    n = min(round(attack.rate * len(x)), len(candidates))
    idx = np.sort(rng.choice(candidates, size=n, replace=False))
    xp, yp = x.copy(), y.copy()
    xp[idx] = attack.apply(x[idx])
    yp[idx] = attack_labels(attack, y[idx], int(y.max()) + 1)
    if attack.source is not None:
        cover = rng.choice(np.flatnonzero((y != attack.source) & (y != attack.target)), size=n, replace=False)
        xp[cover] = attack.apply(x[cover])
    return xp, yp, idx
