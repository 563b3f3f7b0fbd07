"""Numpy rules for shapes, indexing and broadcasting, and Einsum.

Slice, Split (several outputs: a multi-output rule), Expand, Tile, Where, ConstantOfShape, ArgMax/ArgMin
and Einsum. Signatures as in :mod:`onnx_ops`; merged into the tape's rules by :mod:`onnx_extra_ops`.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np

from services.scanner.adapters.onnx_ml_ops import MultiBackward, MultiForward
from services.scanner.adapters.onnx_ops import (
    Arr,
    Attrs,
    Backward,
    Forward,
    Grads,
    nondiff,
    rest_none,
    unbroadcast,
)
from services.scanner.adapters.onnx_spatial_ops import astr

# -- shapes, indexing, broadcasting ---------------------------------------------------------------

def _slices(i: list[Arr], a: Attrs) -> tuple[slice, ...]:
    """Python slices equal ONNX Slice semantics, clamping included (inputs from opset 10)."""
    if len(i) > 1:
        starts, ends = [int(v) for v in i[1]], [int(v) for v in i[2]]
        axes = [int(v) for v in i[3]] if len(i) > 3 and i[3].size else list(range(len(starts)))
        steps = [int(v) for v in i[4]] if len(i) > 4 and i[4].size else [1] * len(starts)
    else:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes, steps = list(a.get("axes", range(len(starts)))), [1] * len(starts)
    sl = [slice(None)] * i[0].ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        sl[ax % i[0].ndim] = slice(s, e, st)
    return tuple(sl)


def _slice_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    gx = np.zeros(i[0].shape, dtype=g.dtype)
    gx[_slices(i, a)] = g
    return [gx, *rest_none(i)]


def _expand_f(i: list[Arr], _a: Attrs) -> Arr:
    return np.broadcast_to(i[0], np.broadcast_shapes(i[0].shape, tuple(int(v) for v in i[1]))).copy()


def _tile_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    x, reps = i[0], [int(r) for r in i[1]]
    split = [v for r, n in zip(reps, x.shape, strict=True) for v in (r, n)]
    return [g.reshape(split).sum(axis=tuple(range(0, 2 * x.ndim, 2))), None]


def _where_b(i: list[Arr], _o: Arr, _a: Attrs, g: Arr) -> Grads:
    c = i[0]
    return [None, unbroadcast(np.where(c, g, 0), i[1].shape), unbroadcast(np.where(c, 0, g), i[2].shape)]


def _constant_of_shape(i: list[Arr], a: Attrs) -> Arr:
    v = np.asarray(a.get("value", np.zeros(1, np.float32)))
    return np.full(tuple(int(s) for s in i[0]), v.reshape(-1)[0], dtype=v.dtype)


def _arg(fn: Callable[..., Arr]) -> Forward:
    def forward(i: list[Arr], a: Attrs) -> Arr:
        x, axis = i[0], a.get("axis", 0) % i[0].ndim
        r = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis) if a.get("select_last_index", 0) else fn(x, axis=axis)
        return np.asarray(np.expand_dims(r, axis) if a.get("keepdims", 1) else r, dtype=np.int64)

    return forward


def _split_sizes(i: list[Arr], a: Attrs) -> list[int]:
    n_axis = i[0].shape[a.get("axis", 0)]
    if len(i) > 1 and i[1].size:
        return [int(v) for v in i[1]]
    if "split" in a:
        return [int(v) for v in a["split"]]
    n = int(a.get("num_outputs") or a.get("_n_out") or 1)
    step = -(-n_axis // n)  # opset 18: the last chunk is smaller when the axis does not divide
    return [max(min(step, n_axis - k * step), 0) for k in range(n)]


def _split_f(i: list[Arr], a: Attrs) -> list[Arr]:
    return list(np.split(i[0], np.cumsum(_split_sizes(i, a))[:-1], axis=a.get("axis", 0)))


def _split_b(i: list[Arr], outs: list[Arr], a: Attrs, gs: list[Arr | None]) -> Grads:
    parts = [np.zeros_like(o) if g is None else g for g, o in zip(gs, outs, strict=True)]
    return [np.concatenate(parts, axis=a.get("axis", 0)), *rest_none(i)]


# -- Einsum ---------------------------------------------------------------------------------------

def einsum_terms(eq: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str]:
    """Operand and output subscripts with ``...`` spelt out in letters the equation does not use."""
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    free = [c for c in string.ascii_letters if c not in eq]
    ranks = [len(s) - len(t) + 3 if "..." in t else 0 for t, s in zip(terms, shapes, strict=True)]
    ell = "".join(free[:max(ranks, default=0)])
    full = [t.replace("...", ell[len(ell) - r:]) for t, r in zip(terms, ranks, strict=True)]
    if arrow:
        return full, rhs.replace("...", ell)
    return full, ell + "".join(sorted(c for c in set(lhs) if c.isalpha() and lhs.count(c) == 1))


def _einsum_b(i: list[Arr], _o: Arr, a: Attrs, g: Arr) -> Grads:
    terms, out = einsum_terms(astr(a, "equation", ""), [t.shape for t in i])
    sizes: dict[str, int] = {}
    for t, x in zip(terms, i, strict=True):
        for c, n in zip(t, x.shape, strict=True):
            sizes[c] = max(sizes.get(c, 1), n)
    full = [np.broadcast_to(x, [sizes[c] for c in t]) for t, x in zip(terms, i, strict=True)]
    grads: Grads = []
    for k, (t, x) in enumerate(zip(terms, i, strict=True)):
        others = [j for j in range(len(i)) if j != k]
        avail = set(out).union(*[terms[j] for j in others])
        keep = "".join(c for c in t if c in avail)
        gk = np.einsum(",".join([out, *[terms[j] for j in others]]) + "->" + keep, g, *[full[j] for j in others])
        gk = np.broadcast_to(gk.reshape([sizes[c] if c in avail else 1 for c in t]), [sizes[c] for c in t])
        grads.append(np.ascontiguousarray(unbroadcast(gk, x.shape)))
    return grads


INDEX_RULES: dict[str, tuple[Forward, Backward]] = {
    "Slice": ((lambda i, a: i[0][_slices(i, a)]), _slice_b),
    "Expand": (_expand_f, lambda i, o, a, g: [unbroadcast(g, i[0].shape), None]),
    "Tile": ((lambda i, a: np.tile(i[0], [int(r) for r in i[1]])), _tile_b),
    "Where": ((lambda i, a: np.where(i[0], i[1], i[2])), _where_b),
    "ConstantOfShape": nondiff(_constant_of_shape),
    "ArgMax": nondiff(_arg(np.argmax)),
    "ArgMin": nondiff(_arg(np.argmin)),
    "Einsum": ((lambda i, a: np.asarray(np.einsum(astr(a, "equation", ""), *i))), _einsum_b),
}

INDEX_MULTI_RULES: dict[str, tuple[MultiForward, MultiBackward]] = {
    "Split": (_split_f, _split_b),
}
