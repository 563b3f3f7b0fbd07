"""Does a reversed trigger look like its own class? A cue that tells planted triggers from natural ones. Pure.

Neural Cleanse's weak spot on small models is the class that is *naturally* easy to reach: a few
pixels of a stroke turn most digits into a 1 or a 4, so that class's minimal mask is as small as a
planted patch. But a natural trigger is made of the class's own features: where its mask is on, its
pattern departs from the average input the way that class's images do. A planted trigger (a corner
patch, a frame on the border, a sine signal) departs from the average input where no image of the
class does anything special, so within its mask it looks like none of them.

For class c with mask m_c and pattern p_c, over clean inputs x_i of class c (mean input mu):

    likeness_c = mean of the top quarter of cos( m_c * (p_c - mu), m_c * (x_i - mu) )

(the mask broadcast over channels). The top quarter, not the class mean image: a class has several
ways of being written, and a natural trigger need only look like some of them. The per-class signal
is the robust z of *low* likeness, its scale floored at ``LIKENESS_FLOOR`` (cosines of unrelated
patterns scatter by about that much), published by Neural Cleanse as ``foreign_class_scores``.

Measured on three digit zoos (seed 0): the per-class signal of clean models peaks at a median of 1.6
and at most 2.9, mostly on class 1; at the planted target it has a median of 2.8-4.2, and more than 3
for 10 of 22, 10 of 20 and 13 of 18 backdoors. Small corner patches and border frames that Neural
Cleanse's own index leaves under its bar reach 2.9-3.3, but not all of them do (a frame on a strided
CNN scored 0.1). On clean models its per-class correlation with Neural Cleanse's own index is 0.38-0.42
(class 1 is both naturally small and unlike its class), which the verdict takes into account when it
joins the signal (:mod:`..fusion`). It never flags on its own: it only says *how* a trigger looks, not
that the model needs it.
"""

from __future__ import annotations

import numpy as np

from services.scanner.domain.model import Dataset, FloatArray
from services.scanner.domain.stats import Arr, robust_z

LIKENESS_FLOOR = 0.1
TOP_SHARE = 0.25


def class_likeness(data: Dataset, masks: FloatArray, patterns: FloatArray) -> Arr:
    """Per class: how much its reversed trigger (masks [K, *mask], patterns [K, *input]) looks like
    the class's own clean inputs (cosine in [-1, 1]; NaN for a class without clean inputs)."""
    k = len(masks)
    x = data.x.astype(float)
    mu = x.mean(axis=0)
    spread = (1,) if x.ndim == 4 else ()  # image masks are [H, W], shared across channels
    out = np.full(k, np.nan)
    for c in range(k):
        own = x[data.y == c]
        if not len(own):
            continue
        m = masks[c].reshape(*spread, *masks[c].shape)
        a = (m * (patterns[c] - mu)).ravel()
        b = (m[None] * (own - mu)).reshape(len(own), -1)
        cos = b @ a / (np.linalg.norm(b, axis=1) * np.linalg.norm(a) + 1e-12)
        top = np.sort(cos)[-max(1, int(np.ceil(TOP_SHARE * len(cos)))):]
        out[c] = float(top.mean())
    return out


def foreign_index(likeness: Arr) -> Arr:
    """Per-class index of triggers unlike their class (robust z of low likeness); a class without
    clean inputs scores 0."""
    known = np.isfinite(likeness)
    index = np.zeros(len(likeness))
    if known.sum() >= 3:
        index[known] = -robust_z(likeness[known], floor=LIKENESS_FLOOR)
    return index
