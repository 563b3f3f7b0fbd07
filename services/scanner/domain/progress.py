"""How far the long loops of a detector are, for whoever listens (the CLI's progress bar). Pure.

A trigger search on a large model runs for minutes; the detectors report their steps here and the
entrypoint that wants them sets a listener for the duration of a scan (a context variable: no plumbing
through the detector API, nothing reported when nobody listens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StepListener = Callable[[str, int, int], None]  # (stage, steps done, steps in all)
EVERY = 10  # steps between reports

_listener: ContextVar[StepListener | None] = ContextVar("scanner_step_listener", default=None)


def report(stage: str, done: int, total: int) -> None:
    """Tell the listener, if any, that ``done`` of ``total`` steps of ``stage`` are done (every
    ``EVERY`` steps and at the last one)."""
    listener = _listener.get()
    if listener is not None and (done % EVERY == 0 or done == total):
        listener(stage, done, total)


@contextmanager
def listening(listener: StepListener) -> Iterator[None]:
    """Send the detectors' step reports to ``listener`` inside the ``with`` block."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
