"""picklescan as a second opinion only: it may add a rejection, it never grants a pass.

picklescan is a blocklist with many published bypasses, so it runs only after the allowlist has
already accepted a pickle, and only where it is installed (it is a dev extra).
"""

from __future__ import annotations

import logging
from typing import IO


def second_opinion(stream: IO[bytes], label: str) -> str | None:
    """A reason to reject from picklescan, or None (also when picklescan is not installed)."""
    try:
        from picklescan.scanner import scan_pickle_bytes
    except ImportError:
        return None
    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    result = scan_pickle_bytes(stream, label)
    if result.issues_count or result.scan_err:
        flagged = ", ".join(f"{g.module}.{g.name}" for g in result.globals if g.safety.value != "innocuous")
        return f"{label}: picklescan flags {flagged or 'a parse error'}"
    return None
