"""Numpy rule for ``ai.onnx.ml`` SVMClassifier, as skl2onnx exports scikit-learn's ``SVC`` and ``NuSVC``.

Forward as onnxruntime computes it (``svmclassifier.cc``): with support vectors, one decision value per
class pair (i, j), i < j in order, ``sum_v coef * K(x, sv_v) + rho`` over the two classes' support vectors,
a vote for i when it is positive, the label the class with most votes (the first on a tie); the scores
output holds the pair decisions (two classes: ``[-d, d]``). Without support vectors (liblinear mode) the
scores are ``x . coef_c + rho[0]`` per class. Kernels: LINEAR, POLY, RBF, SIGMOID.

Backward differentiates the scores output through the kernels to the input. skl2onnx turns the pair
decisions of a plain ``SVC`` into scikit-learn's one-vs-rest decision function with votes (a step: no
gradient) plus the decisions squashed by ``d / (3 (|d| + 1))`` per class, so the search reads the
decisions' gradients through that squash.

Refused at load (:data:`SVM_CHECKS`), so such graphs keep the gradient-free estimate: Platt probabilities
(``prob_a`` / ``prob_b``, ``SVC(probability=True)``), whose multi-class coupling is an iterative solve, and
any ``post_transform`` but NONE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.scanner.adapters.onnx_ops import Arr, Attrs, Grads
from services.scanner.adapters.onnx_spatial_ops import astr

KERNELS = frozenset({"LINEAR", "POLY", "RBF", "SIGMOID"})


def _floats(a: Attrs, key: str) -> Arr:
    return np.asarray(a.get(key, []), dtype=np.float32)


def _labels(a: Attrs) -> Arr:
    return np.asarray(a.get("classlabels_ints") or a.get("classlabels_strings") or [0, 1])


def _kernel_params(a: Attrs) -> tuple[float, float, float]:
    p = [*a.get("kernel_params", []), 0.0, 0.0, 0.0]
    return float(p[0]), float(p[1]), float(p[2])


def _svc_arrays(a: Attrs, classes: int) -> tuple[Arr, Arr, Arr]:
    """Support vectors [V, F], the [V, P] weights that turn an input's kernel row into its P pair decisions (less
    ``rho``), and ``rho`` [P]. Kept with the node's attributes: a search asks for them every step."""
    cached = a.get(_CACHE)
    if cached is None:
        sv = _floats(a, "support_vectors").reshape(int(np.sum(a["vectors_per_class"])), -1)
        cached = a[_CACHE] = (sv, *_weights(a, classes))
    arrays: tuple[Arr, Arr, Arr] = cached
    return arrays


_CACHE = "_bdguard_svc_arrays"


def _pairs(classes: int) -> list[tuple[int, int]]:
    """Class pairs (i, j), i < j, in libsvm's and onnxruntime's order."""
    return [(i, j) for i in range(classes - 1) for j in range(i + 1, classes)]


def _weights(a: Attrs, classes: int) -> tuple[Arr, Arr]:
    """Pair (i, j) reads class i's support vectors with coefficient row j - 1 and class j's with row i."""
    per = np.asarray(a["vectors_per_class"], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(per)[:-1]])
    v = int(per.sum())
    coef = _floats(a, "coefficients")[: (classes - 1) * v].reshape(classes - 1, v)
    pairs = _pairs(classes)
    w = np.zeros((v, len(pairs)), dtype=np.float32)
    for p, (i, j) in enumerate(pairs):
        si, sj = slice(start[i], start[i] + per[i]), slice(start[j], start[j] + per[j])
        w[si, p] = coef[j - 1, si]
        w[sj, p] = coef[i, sj]
    return w, _floats(a, "rho")[: len(pairs)]


def _kernel(x: Arr, sv: Arr, a: Attrs) -> tuple[Arr, Arr]:
    """K(x, sv) [N, V] and what its derivative needs (the dot products, or the kernel itself)."""
    kind, (gamma, coef0, degree) = astr(a, "kernel_type", "LINEAR"), _kernel_params(a)
    if kind == "RBF":
        d2 = (x * x).sum(axis=1, keepdims=True) + (sv * sv).sum(axis=1)[None] - 2.0 * x @ sv.T
        k = np.exp(-gamma * np.maximum(d2, 0.0))
        return k, k
    dot = x @ sv.T
    if kind == "POLY":
        return np.power(gamma * dot + coef0, degree), dot
    if kind == "SIGMOID":
        return np.tanh(gamma * dot + coef0), dot
    return dot, dot


def _kernel_b(x: Arr, sv: Arr, k: Arr, saved: Arr, gk: Arr, a: Attrs) -> Arr:
    """d loss / d x [N, F] from d loss / d K [N, V]."""
    kind, (gamma, coef0, degree) = astr(a, "kernel_type", "LINEAR"), _kernel_params(a)
    if kind == "RBF":
        gkk = gk * k
        out: Arr = -2.0 * gamma * (gkk.sum(axis=1, keepdims=True) * x - gkk @ sv)
        return out
    if kind == "POLY":
        gk = gk * degree * gamma * np.power(gamma * saved + coef0, degree - 1)
    elif kind == "SIGMOID":
        gk = gk * gamma * (1.0 - k * k)
    grad: Arr = gk @ sv
    return grad


def _parts(x_in: Arr, a: Attrs) -> dict[str, Any]:
    x = np.asarray(x_in, dtype=np.float32).reshape(-1, x_in.shape[-1])
    labels = _labels(a)
    if not a.get("vectors_per_class"):  # liblinear mode: one coefficient row per class
        coef = _floats(a, "coefficients").reshape(len(labels), -1)
        return {"x": x, "labels": labels, "linear": coef, "scores": x @ coef.T + _floats(a, "rho")[0]}
    sv, w, rho = _svc_arrays(a, len(labels))
    k, saved = _kernel(x, sv, a)
    return {"x": x, "labels": labels, "sv": sv, "k": k, "saved": saved, "w": w, "d": k @ w + rho}


def _votes(d: Arr, classes: int) -> Arr:
    votes = np.zeros((len(d), classes), dtype=np.int64)
    for p, (i, j) in enumerate(_pairs(classes)):
        votes[:, i] += d[:, p] > 0
        votes[:, j] += d[:, p] <= 0
    return votes


def _linear_label(s: Arr, labels: Arr, a: Attrs) -> Arr:
    """onnxruntime's label in liblinear mode: the best class, but with two classes the second one whenever the
    best score is positive (or at least 0.5 when every coefficient is)."""
    label: Arr = labels[np.argmax(s, axis=1)]
    if len(labels) != 2:
        return label
    best = s.max(axis=1)
    second = best >= 0.5 if bool((_floats(a, "coefficients") >= 0).all()) else best > 0
    chosen: Arr = np.where(second, labels[1], label)
    return chosen


def _svm_f(i: list[Arr], a: Attrs) -> list[Arr]:
    parts, dtype = _parts(i[0], a), np.float32
    labels = parts["labels"]
    if "linear" in parts:
        s = parts["scores"]
        return [_linear_label(s, labels, a), s.astype(dtype)]
    d = parts["d"]
    label = labels[np.argmax(_votes(d, len(labels)), axis=1)]
    scores = np.concatenate([-d, d], axis=1) if len(labels) == 2 else d
    return [label, scores.astype(dtype)]


def _svm_b(i: list[Arr], outs: list[Arr], a: Attrs, gs: list[Arr | None]) -> Grads:
    g = gs[1] if len(gs) > 1 else None
    if g is None:
        return [None]
    parts, g32 = _parts(i[0], a), np.asarray(g, dtype=np.float32)
    if "linear" in parts:
        gx = g32 @ parts["linear"]
    else:
        gd = g32[:, 1:] - g32[:, :1] if len(parts["labels"]) == 2 else g32
        gx = _kernel_b(parts["x"], parts["sv"], parts["k"], parts["saved"], gd @ parts["w"].T, a)
    return [gx.reshape(i[0].shape).astype(g.dtype, copy=False)]


def _svm_check(a: Attrs) -> str | None:
    if len(a.get("prob_a", [])):
        return "SVMClassifier with Platt probabilities (prob_a / prob_b: an iterative pairwise coupling)"
    post = astr(a, "post_transform", "NONE")
    if post != "NONE":
        return f"SVMClassifier post_transform={post}"
    kind = astr(a, "kernel_type", "LINEAR")
    return None if kind in KERNELS else f"SVMClassifier kernel_type={kind}"


SVM_MULTI_RULES = {"SVMClassifier": (_svm_f, _svm_b)}
SVM_CHECKS = {"SVMClassifier": _svm_check}
