"""Lookalike-name primitives: script mixing, confusable skeletons, edit distance with transpositions.

Limits: the confusable table covers the Latin lookalikes used in real IDN attacks (Cyrillic, Greek,
fullwidth via NFKC, digit/letter swaps, ``rn``/``vv``/``cl``); it is not the full Unicode TR39 table,
so the source check also refuses any non-ASCII or punycode host outright.
"""

from __future__ import annotations

import unicodedata

_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ɡ": "g", "ց": "g", "ս": "u", "օ": "o",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "γ": "y",
    # Latin extensions and symbols
    "ı": "i", "ℓ": "l", "ǀ": "l", "ß": "ss", "‐": "-", "‑": "-", "–": "-", "。": ".", "．": ".",
}  # fmt: skip
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_DIGITS = str.maketrans({"0": "o", "1": "l", "i": "l", "3": "e", "5": "s", "4": "a", "7": "t", "8": "b"})


def scripts(text: str) -> set[str]:
    """Unicode scripts (first word of the character name) of the letters in ``text``."""
    found = set()
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isalpha():
            found.add(unicodedata.name(ch, "UNKNOWN").split()[0])
    return found


def skeleton(text: str) -> str:
    """Fold ``text`` to what it looks like: NFKC, confusables to Latin, lower case, digit/letter swaps."""
    folded = "".join(_CONFUSABLES.get(ch, ch) for ch in unicodedata.normalize("NFKC", text).lower())
    folded = unicodedata.normalize("NFKD", folded)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    for pair, single in _MULTI:
        folded = folded.replace(pair, single)
    return folded.translate(_DIGITS)


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent transpositions."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def typo_threshold(name: str) -> int:
    """Edit distance still counted as a typosquat of ``name``."""
    return 1 if len(name) <= 8 else 2


def looks_like(candidate: str, trusted: str) -> str | None:
    """Why ``candidate`` imitates ``trusted`` (a host or a label), or None when it does not."""
    if candidate == trusted:
        return None
    if skeleton(candidate) == skeleton(trusted):
        return f"visually confusable with {trusted!r}"
    distance = osa_distance(candidate, trusted)
    if distance <= typo_threshold(trusted):
        return f"typosquat of {trusted!r} (edit distance {distance})"
    return None
