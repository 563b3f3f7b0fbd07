"""Bounded, thread-safe buffer of recorded predictions, grouped per model version.

Full buffer: with ``drop_policy="oldest"`` (default) the oldest predictions make room - recent
traffic is what an on-call responder needs; with ``"newest"`` the incoming ones are refused. Either
way every dropped prediction is counted.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Key = tuple[str, str, int]  # model, version, n_classes


@dataclass(frozen=True)
class Chunk:
    """Predictions of one ``record`` call; ``inputs`` is kept only for STRIP / trigger matching."""

    key: Key
    ids: list[str]
    ts: NDArray[np.float64]
    pred: NDArray[np.int64]
    conf: NDArray[np.float64]
    entropy: NDArray[np.float64]
    sig: list[str]
    inputs: NDArray[np.floating] | None = None
    seq: int = field(default=0)

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int) -> Chunk:
        return replace(self, ids=self.ids[start:stop], ts=self.ts[start:stop], pred=self.pred[start:stop],
                       conf=self.conf[start:stop], entropy=self.entropy[start:stop], sig=self.sig[start:stop],
                       inputs=None if self.inputs is None else self.inputs[start:stop])


class ChunkBuffer:
    def __init__(self, max_items: int, drop_policy: Literal["oldest", "newest"] = "oldest") -> None:
        self.max_items = max_items
        self.drop_policy = drop_policy
        self._lock = threading.Lock()
        self._queues: dict[Key, deque[Chunk]] = {}
        self._seq = itertools.count()
        self.size = 0
        self.dropped = 0

    def put(self, chunk: Chunk) -> None:
        with self._lock:
            if len(chunk) > self.max_items:
                self.dropped += len(chunk) - self.max_items
                chunk = chunk.slice(len(chunk) - self.max_items, len(chunk))
            overflow = self.size + len(chunk) - self.max_items
            if overflow > 0 and self.drop_policy == "newest":
                self.dropped += len(chunk)
                return
            if overflow > 0:
                self._drop_oldest(overflow)
            chunk = replace(chunk, seq=next(self._seq))
            self._queues.setdefault(chunk.key, deque()).append(chunk)
            self.size += len(chunk)

    def _drop_oldest(self, n: int) -> None:
        while n > 0 and self.size:
            key = min((k for k, q in self._queues.items() if q), key=lambda k: self._queues[k][0].seq)
            q = self._queues[key]
            head = q[0]
            if len(head) <= n:
                q.popleft()
                cut = len(head)
            else:
                q[0] = head.slice(n, len(head))
                cut = n
            self.size -= cut
            self.dropped += cut
            n -= cut

    def count_dropped(self, n: int) -> None:
        """Count predictions lost after they left the buffer (a failed send)."""
        with self._lock:
            self.dropped += n

    def take(self, max_items: int) -> list[Chunk]:
        """Up to ``max_items`` oldest predictions of one model version (chunks split as needed)."""
        with self._lock:
            live = [k for k, q in self._queues.items() if q]
            if not live:
                return []
            q = self._queues[min(live, key=lambda k: self._queues[k][0].seq)]
            out: list[Chunk] = []
            room = max_items
            while q and room > 0:
                head = q[0]
                if len(head) <= room:
                    out.append(q.popleft())
                    room -= len(head)
                else:
                    out.append(head.slice(0, room))
                    q[0] = head.slice(room, len(head))
                    room = 0
            self.size -= max_items - room
            return out
