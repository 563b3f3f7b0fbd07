"""Closing the windows of a model version that has gone quiet (no I/O; the service sweeps on a timer).

Windows close when a later batch of the same model version moves the watermark. When none comes (the
server went quiet, or a trigger campaign was the last thing it sent) the last window's drift alerts
and statistics would wait forever. A model version that has sent nothing for ``idle_close_s`` of
processing time gets the classic idle-source watermark instead: event time is taken to have moved on
with the wall time since its last arrival, and what that watermark has passed closes exactly as a
batch would close it. The watermark moves only as far as closing those windows needs, so predictions
that resume after the silence are refused only for windows already published.

Only the keys whose state partition this worker owns are swept, and the quiet time of a key counts
from its last arrival, or from the first sweep after its partition was assigned: time a partition
spent unowned (a crashed worker, a rebalance) is not silence of its producers.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from services.telemetry.service_layer.monitor import MonitorState, Outputs, WindowConfig, close_into


class IdleTracker:
    """Owned input partitions, and since when (processing time, and the watermark then) each key is quiet.

    In memory only: after an assignment every key starts quiet from then. That is safe because the
    decision to close is made durable (the advanced watermark is written) before anything is published.
    """

    def __init__(self, idle_close_s: float) -> None:
        if idle_close_s < 0:
            raise ValueError(f"idle_close_s={idle_close_s} must be >= 0 (0 turns idle closing off)")
        self.idle_close_s = idle_close_s
        self.owned: frozenset[int] = frozenset()
        self._quiet: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.idle_close_s > 0

    def assigned(self, partitions: Collection[int]) -> None:
        """A new assignment (the whole of it): states are re-read, quiet times start again."""
        self.owned = frozenset(partitions)
        self._quiet.clear()

    def revoked(self, partitions: Collection[int]) -> None:
        self.owned = self.owned - frozenset(partitions)

    def arrived(self, key: str, now: float, watermark: float) -> None:
        self._quiet[key] = (now, watermark)

    def candidate(self, key: str, state: MonitorState, now: float) -> float:
        """The watermark ``key`` may close at now: its own, or, once quiet for ``idle_close_s``, its
        watermark at the last arrival advanced by the wall time since."""
        since, base = self._quiet.setdefault(key, (now, state.watermark))
        if now - since < self.idle_close_s:
            return state.watermark
        return max(state.watermark, base + (now - since))


def idle_watermark(state: MonitorState, candidate: float, cfg: WindowConfig) -> float | None:
    """The watermark that closes every open window ``candidate`` has passed, and no further; None when
    none is due (windows already due under the state's own watermark count: a crash left them open)."""
    due = [s + cfg.window_s for s in state.windows if s + cfg.window_s <= candidate - cfg.lateness_s]
    if not due:
        return None
    watermark = max(due) + cfg.lateness_s
    while watermark - cfg.lateness_s < max(due):  # float rounding must not leave the last one open
        watermark = math.nextafter(watermark, math.inf)
    return max(state.watermark, watermark)


def close_idle(state: MonitorState, now: float, cfg: WindowConfig) -> Outputs:
    """Close what ``state.watermark`` (set from :func:`idle_watermark`) has passed: the same windows,
    records and alert ids a batch moving the watermark there would have produced."""
    out = Outputs()
    close_into(out, state, now, cfg)
    return out
