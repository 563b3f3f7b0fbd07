"""Adversarial refresh of the unlearning trigger between fine-tuning epochs (I-BAU-style, targeted).

Zeng et al., "Adversarial Unlearning of Backdoors via Implicit Hypergradient" (I-BAU), ICLR 2022,
alternate an inner maximisation (find the perturbation that still triggers the current model) with an
outer unlearning step. Here the inner step is a few signed-gradient updates of the trigger's pattern
toward the known target, inside the given mask (kept fixed: letting the mask grow turned the
trigger into a digit eraser and cost ~10 points of clean accuracy on the zoo), so unlearning chases
what is left of the backdoor rather than one fixed reversal. Limits: it is targeted (needs the
target class right), uses a handful of steps, and cannot reach trigger pixels outside the mask.
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


def refresh_trigger(tape: GraphTape, params: dict[str, Arr], trigger: Trigger, x: Arr, target: int, *,
                    steps: int, lr: float, rng: np.random.Generator, batch: int = 32,
                    mask_growth: float = 0.0) -> Trigger:
    """Move ``trigger`` toward what makes the model (``params``) predict ``target`` on ``x`` now.

    Args:
        tape: Gradient tape of the model.
        params: Current parameters.
        trigger: Warm start; its mask is kept as is.
        x: Clean inputs [N, *input_shape].
        target: Class to push to.
        steps: Signed-gradient steps.
        lr: Step size of the pattern in logit space.
        rng: Batch sampling.
        batch: Inputs per step.
        mask_growth: Let the mask move, its L1 norm capped at ``(1 + mask_growth)`` times the start.
    """
    lo, hi = float(x.min()), float(x.max())
    span = max(hi - lo, 1e-6)
    m, b = trigger.mask.astype(np.float32), _logit((trigger.pattern - lo) / span)
    cap = (1.0 + mask_growth) * float(m.sum())
    hw_mask = m.shape != x.shape[1:]
    for _ in range(steps):
        xb = x[rng.choice(len(x), size=min(batch, len(x)), replace=False)]
        p = lo + span * _sig(b)
        env = tape.forward(((1 - m) * xb + m * p).astype(np.float32), params)
        z = env[tape.output]
        g = np.exp(z - z.max(axis=1, keepdims=True))
        g /= g.sum(axis=1, keepdims=True)
        g[:, target] -= 1.0
        gx = tape.backward(env, (g / len(xb)).astype(np.float32)).get(tape.input)
        if gx is None:
            break
        b = b - lr * np.sign((gx * m).sum(axis=0))  # sigmoid is monotone: its slope cannot flip the sign
        if mask_growth > 0:
            gm = (gx * (p - xb)).sum(axis=0)
            m = np.clip(m - 0.05 * np.sign(gm.sum(axis=0) if hw_mask else gm), 0.0, 1.0)
            m = m * min(1.0, cap / max(float(m.sum()), 1e-9))  # L1 budget: the reversal's size, grown a bit
    return Trigger(m, (lo + span * _sig(b)).astype(np.float32), target)
