"""Measurement and fine-tuning through the scanner's numpy ONNX interpreter (no torch needed).

The tape exposes every intermediate tensor, so unit activations come from the same forward pass
that computes accuracy; parameter gradients train the whole network with Adam while the pruning
masks keep removed units at exactly zero (masked gradients leave Adam's moments at zero too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from services.remediation.adapters.trigger_refresh import refresh_trigger
from services.remediation.domain.trigger import Trigger
from services.scanner.adapters.onnx_autodiff import GraphTape

Arr = np.ndarray[Any, Any]
Progress = Callable[[str, int, int], None]
_CHUNK = 512


class TapeModel:
    """A classifier on the gradient tape; ``params`` may be swapped per call.

    Args:
        model: The ONNX model.
        output: The [N, K] scores output; a final Softmax is stripped so training sees logits.
    """

    def __init__(self, model: onnx.ModelProto, output: str) -> None:
        self.tape = GraphTape(model, output)
        self.params: dict[str, Arr] = dict(self.tape.params)
        self.trainable = [n for n, v in self.params.items() if v.dtype == np.float32 and v.ndim >= 1]

    def _forward(self, x: Arr, params: dict[str, Arr] | None) -> dict[str, Arr]:
        return self.tape.forward(np.ascontiguousarray(x, np.float32), params or self.params)

    def predict(self, x: Arr, params: dict[str, Arr] | None = None) -> Arr:
        """Labels [N]."""
        return np.concatenate([np.argmax(self._forward(x[i:i + _CHUNK], params)[self.tape.output], axis=1)
                               for i in range(0, len(x), _CHUNK)])

    def accuracy(self, x: Arr, y: Arr, params: dict[str, Arr] | None = None) -> float:
        return float(np.mean(self.predict(x, params) == y))

    def unit_activation(self, x: Arr, tensor: str, params: dict[str, Arr] | None = None) -> Arr:
        """Mean absolute activation per unit [U] of ``tensor`` ([N, U] or [N, U, H, W])."""
        total: Arr | None = None
        for i in range(0, len(x), _CHUNK):
            a = np.abs(self._forward(x[i:i + _CHUNK], params)[tensor])
            s = a.sum(axis=(0, *range(2, a.ndim))) / float(np.prod(a.shape[2:], dtype=np.int64))
            total = s if total is None else total + s
        assert total is not None
        out: Arr = total / len(x)
        return out

    def finetune(self, params: dict[str, Arr], masks: dict[str, Arr], x: Arr, y: Arr, *, epochs: int, lr: float,
                 batch_size: int, seed: int, trigger: Trigger | None = None, unlearn_fraction: float = 0.0,
                 distill: float = 0.0, temperature: float = 2.0, refresh_steps: int = 0, mask_growth: float = 0.0,
                 progress: Progress | None = None) -> dict[str, Arr]:
        """Adam on cross-entropy over all float parameters; pruned entries stay zero.

        With ``trigger``, ``unlearn_fraction`` of each batch is stamped and keeps its true label.
        ``distill`` weighs a distillation term (Hinton et al. 2015) toward the unpruned parent's
        softened outputs on the *clean* rows only, which keeps clean behaviour from drifting on a small
        fine-tuning set; stamped rows see the true label alone, so the backdoor is not distilled.
        ``refresh_steps`` > 0 re-optimises a second trigger toward ``trigger.target`` (an all-to-all
        trigger: away from the true labels) before every epoch (see :mod:`trigger_refresh`); stamped
        rows then use either trigger at random.
        """
        rng = np.random.default_rng(seed)
        teacher = np.concatenate([self._forward(x[i:i + _CHUNK], None)[self.tape.output]
                                  for i in range(0, len(x), _CHUNK)]) if distill > 0 else None
        p = {n: v.copy() for n, v in params.items()}
        m = {n: np.zeros_like(p[n]) for n in self.trainable}
        v = {n: np.zeros_like(p[n]) for n in self.trainable}
        step = 0
        triggers = [trigger] if trigger is not None else []
        for epoch in range(epochs):
            if trigger is not None and (trigger.target is not None or trigger.all_to_all) and refresh_steps > 0:
                warm = triggers[-1]
                triggers = [trigger, refresh_trigger(self.tape, p, warm, x, trigger.target, steps=refresh_steps,
                                                     lr=0.2, rng=rng, mask_growth=mask_growth, labels=y)]
            order = rng.permutation(len(x))
            for s in range(0, len(x), batch_size):
                rows = _with_stamped(order[s:s + batch_size], triggers, unlearn_fraction, rng)
                xb = np.concatenate([x[r] if t is None else t.apply(x[r]) for r, t in rows])
                src = np.concatenate([r for r, _ in rows])
                clean = np.arange(len(src)) < len(rows[0][0])
                soft = None if teacher is None else (teacher[src], clean, distill, temperature)
                yb = y[src]
                step += 1
                self._adam_step(p, m, v, masks, xb, yb, lr, step, soft)
            if progress is not None:
                progress("fine-tune", epoch + 1, epochs)
        return p

    def _adam_step(self, p: dict[str, Arr], m: dict[str, Arr], v: dict[str, Arr], masks: dict[str, Arr],
                   xb: Arr, yb: Arr, lr: float, step: int, soft: tuple[Arr, Arr, float, float] | None) -> None:
        env = self._forward(xb, p)
        z = env[self.tape.output]
        g = _softmax(z)
        g[np.arange(len(yb)), yb] -= 1.0
        if soft is not None:  # d/dz of T^2 KL(teacher_T || student_T) is T (student_T - teacher_T)
            zt, rows, alpha, t = soft
            kd = t * (_softmax(z / t) - _softmax(zt / t))
            g[rows] = (1 - alpha) * g[rows] + alpha * kd[rows]
        grads = self.tape.backward(env, (g / len(yb)).astype(np.float32))
        for n in self.trainable:
            gn = grads.get(n)
            if gn is None:
                continue
            if n in masks:
                gn = gn * masks[n]
            m[n] = 0.9 * m[n] + 0.1 * gn
            v[n] = 0.999 * v[n] + 0.001 * gn * gn
            mh, vh = m[n] / (1 - 0.9 ** step), v[n] / (1 - 0.999 ** step)
            p[n] = (p[n] - lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


def _with_stamped(idx: Arr, triggers: list[Trigger], fraction: float, rng: np.random.Generator
                  ) -> list[tuple[Arr, Trigger | None]]:
    """The batch's clean rows first, then stamped copies of about ``fraction`` of them (added, not
    swapped in), each copy with one of ``triggers`` at random."""
    out: list[tuple[Arr, Trigger | None]] = [(idx, None)]
    if triggers and fraction > 0:
        hit = idx[rng.random(len(idx)) < fraction]
        pick = rng.integers(len(triggers), size=len(hit))
        out += [(hit[pick == k], t) for k, t in enumerate(triggers)]
    return out


def _softmax(z: Arr) -> Arr:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Arr = e / e.sum(axis=1, keepdims=True)
    return out
