"""Pure telemetry domain (stdlib + numpy only): what a window of predictions says about a model.

Typical flow in a stream processor, per message and per closed window::

    batch = PredictionBatch.from_wire(orjson.loads(value))
    builder.add(batch)                       # until builder.ready -> baseline = builder.build()
    stats.add(batch)                         # WindowStats per (model, version, window)
    report = evaluate_window(stats, baseline, model=..., version=...)
"""

from services.telemetry.domain.alerts import (
    BACKDOOR_KINDS,
    DRIFT_KINDS,
    SEVERITY_RANK,
    Alert,
    AlertKind,
    Severity,
)
from services.telemetry.domain.baseline import Baseline, BaselineBuilder
from services.telemetry.domain.batch import PredictionBatch, summarise_probs
from services.telemetry.domain.evaluate import WindowReport, evaluate_window
from services.telemetry.domain.patterns import PatternSummary
from services.telemetry.domain.signature import SignatureSpec, block_hashes, decode, encode, input_signatures
from services.telemetry.domain.sketch import CountMinSketch
from services.telemetry.domain.thresholds import Thresholds
from services.telemetry.domain.window import WindowStats, accumulate

__all__ = [
    "BACKDOOR_KINDS",
    "DRIFT_KINDS",
    "SEVERITY_RANK",
    "Alert",
    "AlertKind",
    "Baseline",
    "BaselineBuilder",
    "CountMinSketch",
    "PatternSummary",
    "PredictionBatch",
    "Severity",
    "SignatureSpec",
    "Thresholds",
    "WindowReport",
    "WindowStats",
    "accumulate",
    "block_hashes",
    "decode",
    "encode",
    "evaluate_window",
    "input_signatures",
    "summarise_probs",
]
