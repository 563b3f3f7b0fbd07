"""Allowlist rules for the globals a pickle stream names (decided without executing it)."""

from __future__ import annotations

from collections.abc import Iterable


def global_allowed(qualified: str, allowlist: Iterable[str]) -> bool:
    """``"module.name"`` is allowed only by an exact allowlist entry; no wildcards, no prefixes.

    Dotted names (``getattr`` chains such as ``os.path`` + ``sep.join``) are refused unless listed
    verbatim, and an empty or non-identifier part is always refused.
    """
    if not all(part.isidentifier() for part in qualified.split(".")):
        return False
    return qualified in set(allowlist)
