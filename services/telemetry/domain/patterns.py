"""Recurring signature components per window: a mergeable Misra-Gries summary with class tallies.

Each prediction contributes its non-zero block hashes as components ``block << 24 | hash``. The
summary keeps at most ``capacity`` components (Misra & Gries, 1982; mergeable per Agarwal et al.,
2012): any component with more than ``total / (capacity + 1)`` occurrences in the window survives.
For each tracked component it keeps ``seen`` (occurrences since it was tracked, a lower bound of
its window count), the majority predicted class with its tally, and up to three example ids.

Batches smaller than ``PENDING_ROWS`` predictions (plain clients sending one or two per message, a model
version with little traffic) are held back until that many have gathered: the filter that drops
components seen once per batch (see ``_admissible``) must see enough rows for a recurring trigger to
recur, else a trigger in 5% of the predictions, sent two per message, is never tracked. ``flush`` adds
what is held back (a window calls it when it closes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.telemetry.domain.signature import ALPHABET

BLOCK_SHIFT = 24
MAX_EXAMPLES = 3
PENDING_ROWS = 64


def component_keys(hashes: NDArray[np.uint32]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Flatten block hashes [N, B] into (component keys, row index) for the non-zero blocks."""
    n, b = hashes.shape
    flat = hashes.ravel()
    present = flat != 0
    offsets = np.arange(b, dtype=np.uint64) << np.uint64(BLOCK_SHIFT)
    keys = (flat.astype(np.uint64).reshape(n, b) | offsets).ravel()[present]
    rows = np.repeat(np.arange(n, dtype=np.int64), b)[present]
    return keys, rows


def component_name(key: int) -> str:
    """Readable component, e.g. ``"b15:4cH0"`` (block 15, the block's 4 signature characters)."""
    block, h = key >> BLOCK_SHIFT, key & 0xFFFFFF
    return f"b{block}:" + "".join(ALPHABET[(h >> s) & 63] for s in (18, 12, 6, 0))


class PatternSummary:
    """Bounded, mergeable summary of recurring components in one window."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity!r}: must be >= 1")
        self.capacity = capacity
        self.keys = np.zeros(0, dtype=np.uint64)
        self.weight = np.zeros(0, dtype=np.int64)
        self.seen = np.zeros(0, dtype=np.int64)
        self.top_class = np.zeros(0, dtype=np.int64)
        self.top_count = np.zeros(0, dtype=np.int64)
        self.examples: list[list[str]] = []
        self.pending: list[tuple[NDArray[np.uint32], NDArray[np.int64], list[str]]] = []  # small batches held back

    def __len__(self) -> int:
        return int(self.keys.size)

    @property
    def pending_rows(self) -> int:
        return sum(len(ids) for _, _, ids in self.pending)

    def update(self, hashes: NDArray[np.uint32], preds: NDArray[np.int64], ids: list[str]) -> None:
        """Add one batch: block hashes [N, B], predicted classes [N], prediction ids [N] (held back while
        fewer than ``PENDING_ROWS`` predictions have gathered)."""
        if len(ids) == 0:
            return
        self.pending.append((hashes, preds, list(ids)))
        if self.pending_rows >= PENDING_ROWS:
            self.flush()

    def flush(self) -> None:
        """Add the predictions held back, however few."""
        if not self.pending:
            return
        widths = {h.shape[1] for h, _, _ in self.pending}
        held, self.pending = self.pending, []
        if len(widths) > 1:  # signatures of another block count: each part on its own
            for h, p, i in held:
                self._add(h, p, i)
            return
        self._add(np.concatenate([h for h, _, _ in held]), np.concatenate([p for _, p, _ in held]),
                  [x for _, _, i in held for x in i])

    def _add(self, hashes: NDArray[np.uint32], preds: NDArray[np.int64], ids: list[str]) -> None:
        keys, rows = component_keys(hashes)
        keys, rows = self._admissible(keys, rows)
        if keys.size == 0:
            return
        uniq, first, inv, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        cls, ccount = _top_class(inv, preds[rows], np.ones(inv.size, dtype=np.int64), uniq.size)
        batch = PatternSummary(self.capacity)
        batch.keys, batch.weight, batch.seen = uniq, counts.astype(np.int64), counts.astype(np.int64)
        batch.top_class, batch.top_count = cls, ccount
        first_rows = rows[first]
        batch.examples = _LazyExamples(ids, first_rows)  # type: ignore[assignment]
        self._absorb(batch)

    def _admissible(
        self, keys: NDArray[np.uint64], rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
        """Components already tracked or seen twice in this batch.

        A component seen once in a batch and not tracked would be pruned by Misra-Gries anyway as
        soon as the batch holds more than ``capacity`` distinct singletons (clean traffic always
        does), so it is filtered first: one sort of the batch instead of several.
        """
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        wanted = np.union1d(repeated, self.keys)
        if wanted.size == 0:
            return keys[:0], rows[:0]
        pos = np.minimum(np.searchsorted(wanted, keys), wanted.size - 1)
        keep = wanted[pos] == keys
        return keys[keep], rows[keep]

    def merge(self, other: PatternSummary) -> PatternSummary:
        """New summary holding both windows' components (capacity of ``self``), and what both held back."""
        out = self.copy()
        out._absorb(other)
        out.pending += [(h.copy(), p.copy(), list(i)) for h, p, i in other.pending]
        if out.pending_rows >= PENDING_ROWS:
            out.flush()
        return out

    def copy(self) -> PatternSummary:
        out = PatternSummary(self.capacity)
        out.keys, out.weight, out.seen = self.keys.copy(), self.weight.copy(), self.seen.copy()
        out.top_class, out.top_count = self.top_class.copy(), self.top_count.copy()
        out.examples = [list(e) for e in self.examples]
        out.pending = [(h.copy(), p.copy(), list(i)) for h, p, i in self.pending]
        return out

    def _absorb(self, other: PatternSummary) -> None:
        n_self = self.keys.size
        keys = np.concatenate([self.keys, other.keys])
        uniq, inv = np.unique(keys, return_inverse=True)
        weight = np.bincount(inv, weights=np.concatenate([self.weight, other.weight]), minlength=uniq.size)
        seen = np.bincount(inv, weights=np.concatenate([self.seen, other.seen]), minlength=uniq.size)
        cls, ccount = _top_class(inv, np.concatenate([self.top_class, other.top_class]),
                                 np.concatenate([self.top_count, other.top_count]), uniq.size)
        weight = weight.astype(np.int64)
        if uniq.size > self.capacity:  # Misra-Gries prune: subtract the (capacity+1)-th largest counter
            cut = np.partition(weight, uniq.size - self.capacity - 1)[uniq.size - self.capacity - 1]
            weight = weight - cut
        keep = np.flatnonzero(weight > 0)
        # where each kept key came from in self / other (-1 if absent), for the example lists
        src_self = np.full(uniq.size, -1, dtype=np.int64)
        src_self[inv[:n_self]] = np.arange(n_self)
        src_other = np.full(uniq.size, -1, dtype=np.int64)
        src_other[inv[n_self:]] = np.arange(other.keys.size)
        examples = []
        for i in keep.tolist():
            ex = list(self.examples[src_self[i]]) if src_self[i] >= 0 else []
            if len(ex) < MAX_EXAMPLES and src_other[i] >= 0:
                ex.extend(other.examples[src_other[i]][: MAX_EXAMPLES - len(ex)])
            examples.append(ex)
        self.keys, self.weight = uniq[keep], weight[keep]
        self.seen = seen[keep].astype(np.int64)
        self.top_class, self.top_count = cls[keep], ccount[keep]
        self.examples = examples

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (keys as ints)."""
        return {"capacity": self.capacity, "keys": self.keys.tolist(), "weight": self.weight.tolist(),
                "seen": self.seen.tolist(), "top_class": self.top_class.tolist(),
                "top_count": self.top_count.tolist(), "examples": self.examples,
                "pending": [{"hashes": h.tolist(), "pred": p.tolist(), "ids": i} for h, p, i in self.pending]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatternSummary:
        out = cls(int(data["capacity"]))
        out.keys = np.asarray(data["keys"], dtype=np.uint64)
        out.weight = np.asarray(data["weight"], dtype=np.int64)
        out.seen = np.asarray(data["seen"], dtype=np.int64)
        out.top_class = np.asarray(data["top_class"], dtype=np.int64)
        out.top_count = np.asarray(data["top_count"], dtype=np.int64)
        out.examples = [list(map(str, e)) for e in data["examples"]]
        out.pending = [(np.asarray(d["hashes"], dtype=np.uint32).reshape(len(d["ids"]), -1),
                        np.asarray(d["pred"], dtype=np.int64), [str(x) for x in d["ids"]])
                       for d in data.get("pending") or []]  # states written before it have none
        return out


class _LazyExamples:
    """Example-id lists of a batch, built only for the components that survive the prune."""

    def __init__(self, ids: list[str], rows: NDArray[np.int64]) -> None:
        self._ids, self._rows = ids, rows

    def __getitem__(self, i: int) -> list[str]:
        return [str(self._ids[int(self._rows[i])])]


def _top_class(
    inv: NDArray[np.int64], classes: NDArray[np.int64], counts: NDArray[np.int64], n: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Majority class and its tally per group ``inv`` (0..n-1), from (class, count) entries."""
    width = int(classes.max(initial=0)) + 1
    pair_u, pair_inv = np.unique(inv.astype(np.int64) * width + classes, return_inverse=True)
    tallies = np.bincount(pair_inv, weights=counts, minlength=pair_u.size).astype(np.int64)
    group, cls = pair_u // width, pair_u % width
    order = np.lexsort((tallies, group))
    last = np.ones(order.size, dtype=bool)
    last[:-1] = group[order][1:] != group[order][:-1]
    pick = order[last]
    out_cls = np.zeros(n, dtype=np.int64)
    out_cnt = np.zeros(n, dtype=np.int64)
    out_cls[group[pick]] = cls[pick]
    out_cnt[group[pick]] = tallies[pick]
    return out_cls, out_cnt
