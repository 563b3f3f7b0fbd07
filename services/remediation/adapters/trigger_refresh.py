"""Adversarial refresh of the unlearning trigger between fine-tuning epochs (I-BAU-style, targeted).

Zeng et al., "Adversarial Unlearning of Backdoors via Implicit Hypergradient" (I-BAU), ICLR 2022,
alternate an inner maximisation (find the perturbation that still triggers the current model) with an
outer unlearning step. Here the inner step is a few signed-gradient updates of the trigger's pattern
toward the known target, inside the given mask (kept fixed: letting the mask grow turned the
trigger into a digit eraser and cost ~10 points of clean accuracy on the zoo), so unlearning chases
what is left of the backdoor rather than one fixed reversal. An all-to-all trigger has no target:
there the pattern moves to push inputs off their own labels (``labels``). Limits: a targeted refresh
needs the target class right; it uses a handful of steps and cannot reach trigger pixels outside the
mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.remediation.domain.trigger import Trigger
from services.scanner.adapters.onnx_autodiff import GraphTape

Arr = np.ndarray[Any, Any]


def _sig(a: Arr) -> Arr:
    out: Arr = 1.0 / (1.0 + np.exp(-a))
    return out


def _logit(p: Arr) -> Arr:
    q = np.clip(p, 0.02, 0.98)
    out: Arr = np.log(q / (1 - q))
    return out


def refresh_trigger(tape: GraphTape, params: dict[str, Arr], trigger: Trigger, x: Arr, target: int | None, *,
                    steps: int, lr: float, rng: np.random.Generator, batch: int = 32,
                    mask_growth: float = 0.0, labels: Arr | None = None) -> Trigger:
    """Move ``trigger`` toward what makes the model (``params``) predict ``target`` on ``x`` now, or
    (``target`` None: an all-to-all trigger) away from each input's own label in ``labels``.

    Args:
        tape: Gradient tape of the model.
        params: Current parameters.
        trigger: Warm start; its mask is kept as is.
        x: Clean inputs [N, *input_shape].
        target: Class to push to; ``None`` pushes off ``labels`` instead.
        steps: Signed-gradient steps.
        lr: Step size of the pattern in logit space.
        rng: Batch sampling.
        batch: Inputs per step.
        mask_growth: Let the mask move, its L1 norm capped at ``(1 + mask_growth)`` times the start.
        labels: The true label of every input of ``x``; needed when ``target`` is None.
    """
    if target is None and (labels is None or len(labels) != len(x)):
        raise ValueError("an untargeted refresh needs the label of every input")
    lo, hi = float(x.min()), float(x.max())
    span = max(hi - lo, 1e-6)
    m, b = trigger.mask.astype(np.float32), _logit((trigger.pattern - lo) / span)
    cap = (1.0 + mask_growth) * float(m.sum())
    hw_mask = m.shape != x.shape[1:]
    for _ in range(steps):
        rows = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        xb = x[rows]
        p = lo + span * _sig(b)
        env = tape.forward(((1 - m) * xb + m * p).astype(np.float32), params)
        z = env[tape.output]
        g = np.exp(z - z.max(axis=1, keepdims=True))
        g /= g.sum(axis=1, keepdims=True)
        if target is not None:
            g[:, target] -= 1.0  # descend the cross-entropy toward the target
        else:
            assert labels is not None
            g[np.arange(len(rows)), labels[rows]] -= 1.0
            g = -g  # ascend the cross-entropy of the own label
        gx = tape.backward(env, (g / len(xb)).astype(np.float32)).get(tape.input)
        if gx is None:
            break
        b = b - lr * np.sign((gx * m).sum(axis=0))  # sigmoid is monotone: its slope cannot flip the sign
        if mask_growth > 0:
            gm = (gx * (p - xb)).sum(axis=0)
            m = np.clip(m - 0.05 * np.sign(gm.sum(axis=0) if hw_mask else gm), 0.0, 1.0)
            m = m * min(1.0, cap / max(float(m.sum()), 1e-9))  # L1 budget: the reversal's size, grown a bit
    return Trigger(m, (lo + span * _sig(b)).astype(np.float32), target, all_to_all=target is None)
