"""onnxruntime session options for the scanner's sessions, and how many threads a model's sessions get.

A scan runs thousands of small forward and backward passes. On a small model a second thread costs more in
hand-offs than it saves, so sessions run on one thread. A costly model (``PARALLEL_MACS`` multiply-accumulates
per sample and up, e.g. a CIFAR ResNet-18 at 0.56 G) spends its time inside large convolutions and matrix
products, which onnxruntime splits over the cores by output block: the scan then gives every session one
thread per core, up to ``MAX_THREADS`` (``BDGUARD_SCAN_THREADS`` overrides both cases). Each session keeps a pool
of its own and the tape opens two or three per convolution, so the count is capped: a batch of a few dozen rows
gains little past eight threads, and a many-core machine would otherwise hold thousands. The threads sleep between
calls rather than spin, since the tape runs numpy between two kernel calls.
"""

from __future__ import annotations

import os

import onnxruntime as ort

THREADS_ENV = "BDGUARD_SCAN_THREADS"
PARALLEL_MACS = 5e7  # per sample: from here up, a model's sessions run one thread per core
MAX_THREADS = 8


def scan_threads(macs_per_sample: float | None) -> int:
    """Intra-op threads for the sessions of a model that costs ``macs_per_sample`` (``None``: unknown)."""
    given = os.environ.get(THREADS_ENV, "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={given!r}: must be a whole number of threads") from None
    if not macs_per_sample or macs_per_sample < PARALLEL_MACS:
        return 1
    return min(_cores(), MAX_THREADS)


def _cores() -> int:
    """Cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options of one scanner session: ``threads`` intra-op threads, one inter-op thread, quiet logs."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, threads), 1
    opts.log_severity_level = 3
    if threads > 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
