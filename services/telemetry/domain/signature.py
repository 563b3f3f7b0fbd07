"""Compact input signatures: per-block quantised hashes, so recurring patches can be counted.

Idea: a patch trigger (BadNets-style) is stamped at the same place with the same pixels on many
different inputs. Cut each input into a grid of blocks (``[C,H,W]``: ``grid`` blocks over H and W,
all channels together; flat ``[D]``: ``grid[0]*grid[1]`` contiguous segments), normalise the input
to [0, 1] by its own min/max, quantise every value to three levels (dark / mid / bright) and hash
each block's level pattern to 24 bits. A block that the trigger dominates hashes the same on every
triggered input; blocks of clean inputs rarely collide (24-bit hash, three levels of many values).
A block that is entirely mid-level carries no pattern and is emitted as ``0`` (not counted).

The signature is ``4 * n_blocks`` characters of a 64-symbol alphabet (4 characters per block), so
consumers parse it vectorised; a trigger-library match is appended as ``"!" + pattern_id``.

Limits: the trigger must dominate the quantised content of a block (choose a grid whose blocks are
about the trigger's size); blended, warping (WaNet), sample-specific and frequency-domain triggers
do not form a block and are invisible here (the STRIP / IBD-PSC guards cover those); the ternary
quantisation is not robust to small shifts of the patch position, and a natural recurring block
(a watermark, a logo) looks exactly like a trigger, which is why the evaluator also requires class
consistency and novelty against the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
CHARS_PER_BLOCK = 4
TRIGGER_MARK = "!"
_LUT = np.array([ord(c) for c in ALPHABET], dtype=np.uint32)
_INV = np.full(128, 255, dtype=np.uint8)  # 255 marks a character outside the alphabet
_INV[_LUT] = np.arange(64, dtype=np.uint8)
_SHIFTS = np.array([18, 12, 6, 0], dtype=np.uint32)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SignatureSpec:
    """How signatures are cut and quantised.

    Args:
        grid: blocks over (H, W) for images; flat inputs use ``grid[0] * grid[1]`` segments.
        low: normalised level below which a value is "dark".
        high: normalised level above which a value is "bright".
        seed: seed of the hash weights; producers and consumers of a model must agree.
    """

    grid: tuple[int, int] = (4, 4)
    low: float = 0.15
    high: float = 0.85
    seed: int = 20240917

    def __post_init__(self) -> None:
        if min(self.grid) < 1 or self.grid[0] * self.grid[1] > 255:
            raise ValueError(f"grid={self.grid!r}: need 1..255 blocks")
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"low={self.low!r}, high={self.high!r}: need 0 <= low < high <= 1")

    @property
    def n_blocks(self) -> int:
        return self.grid[0] * self.grid[1]


def _blocks(x: NDArray[np.float64], spec: SignatureSpec) -> NDArray[np.float64]:
    """Reshape a batch to [N, n_blocks, block_len] (remainders cropped)."""
    n = x.shape[0]
    if x.ndim == 2:
        b = min(spec.n_blocks, x.shape[1])
        seg = x.shape[1] // b
        return x[:, : b * seg].reshape(n, b, seg)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"inputs of shape {x.shape!r}: expected [N,D], [N,H,W] or [N,C,H,W]")
    _, c, h, w = x.shape
    gh, gw = min(spec.grid[0], h), min(spec.grid[1], w)
    bh, bw = h // gh, w // gw
    x = x[:, :, : gh * bh, : gw * bw].reshape(n, c, gh, bh, gw, bw)
    return x.transpose(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c * bh * bw)


def block_hashes(
    inputs: NDArray[np.floating] | list[object], spec: SignatureSpec | None = None
) -> NDArray[np.uint32]:
    """24-bit hash per block, 0 for blocks with no dark or bright value.

    Args:
        inputs: batch, shape [N, D], [N, H, W] or [N, C, H, W].
        spec: signature settings (default :class:`SignatureSpec`).

    Returns:
        uint32 array [N, n_blocks].
    """
    spec = spec or SignatureSpec()
    x = np.asarray(inputs)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = np.maximum(hi - lo, 1e-12)
    blocks = _blocks(x, spec)
    t_low = (lo + spec.low * span).astype(x.dtype)[:, None, None]
    t_high = (lo + spec.high * span).astype(x.dtype)[:, None, None]
    levels = (blocks > t_low).view(np.uint8) + (blocks > t_high).view(np.uint8)
    rng = np.random.default_rng(spec.seed)
    weights = rng.integers(1, 2**63, size=blocks.shape[2], dtype=np.uint64) | np.uint64(1)
    # integer dot product wraps mod 2**64 on purpose; +1 per value so zeros still contribute
    acc = np.einsum("nbl,l->nb", levels, weights) + weights.sum()
    acc ^= acc >> np.uint64(31)
    acc *= _MIX
    h: NDArray[np.uint32] = (acc >> np.uint64(40)).astype(np.uint32)
    h[h == 0] = 1
    h[(levels == 1).all(axis=2)] = 0
    if h.shape[1] < spec.n_blocks:
        h = np.pad(h, ((0, 0), (0, spec.n_blocks - h.shape[1])))
    return h


def encode(hashes: NDArray[np.uint32], triggers: list[str] | None = None) -> list[str]:
    """Signature strings from block hashes [N, B]; ``triggers[i]`` (or "") marks a library match."""
    n, b = hashes.shape
    digits = (hashes[:, :, None] >> _SHIFTS) & np.uint32(63)
    codes = np.ascontiguousarray(_LUT[digits].reshape(n, b * CHARS_PER_BLOCK))
    sigs: list[str] = codes.view(f"<U{b * CHARS_PER_BLOCK}").ravel().tolist()
    if triggers:
        sigs = [s + TRIGGER_MARK + t if t else s for s, t in zip(sigs, triggers, strict=True)]
    return sigs


def input_signatures(inputs: NDArray[np.floating], spec: SignatureSpec | None = None) -> list[str]:
    """Signature string per input (see module docstring)."""
    return encode(block_hashes(inputs, spec))


def decode(sigs: list[str], n_blocks: int = 16) -> tuple[NDArray[np.uint32], dict[int, str]]:
    """Parse signatures vectorised.

    Returns:
        (block hashes uint32 [N, n_blocks] with 0 where a block is absent or malformed,
        {row index: trigger pattern id} for rows carrying a trigger mark).
    """
    n = len(sigs)
    width = n_blocks * CHARS_PER_BLOCK
    out = np.zeros((n, n_blocks), dtype=np.uint32)
    if n == 0:
        return out, {}
    fast = _decode_plain(sigs, n_blocks)
    if fast is not None:
        return fast, {}
    arr = np.asarray(sigs, dtype=str)
    full = arr.dtype.itemsize // 4
    if full == 0:
        return out, {}
    codes = arr.view(np.uint32).reshape(n, full)
    head = np.zeros((n, width), dtype=np.uint32)
    head[:, : min(width, full)] = codes[:, :width]
    head[head > 127] = 127  # DEL is outside the alphabet too
    vals = np.take(_INV, head)
    ok = (vals != 255).all(axis=1)  # a row with any malformed character is dropped whole
    v = vals.reshape(n, n_blocks, CHARS_PER_BLOCK).astype(np.uint32)
    packed = (v[:, :, 0] << 18) | (v[:, :, 1] << 12) | (v[:, :, 2] << 6) | v[:, :, 3]
    out[ok] = packed[ok]
    marks: dict[int, str] = {}
    if full > width:
        rows = np.flatnonzero(codes[:, width] == ord(TRIGGER_MARK))
        marks = {int(i): sigs[i][width + 1:] for i in rows}
    return out, marks


def _decode_plain(sigs: list[str], n_blocks: int) -> NDArray[np.uint32] | None:
    """The common case at a fraction of the cost: every signature exactly ``n_blocks`` blocks of ASCII,
    no trigger marks (one join and one byte view instead of a numpy unicode array). None otherwise."""
    width = n_blocks * CHARS_PER_BLOCK
    if {len(sigs[0]), *map(len, sigs)} != {width}:
        return None
    try:
        raw = "".join(sigs).encode("ascii")
    except UnicodeEncodeError:
        return None
    vals = np.take(_INV, np.frombuffer(raw, dtype=np.uint8).reshape(len(sigs), width))
    ok = (vals != 255).all(axis=1)  # a row with any malformed character is dropped whole
    v = vals.reshape(len(sigs), n_blocks, CHARS_PER_BLOCK).astype(np.uint32)
    packed = (v[:, :, 0] << 18) | (v[:, :, 1] << 12) | (v[:, :, 2] << 6) | v[:, :, 3]
    packed[~ok] = 0
    return packed.astype(np.uint32, copy=False)
