"""The one module that touches onnxruntime: load a vetted ONNX model in a child process with limits.

The child gets an address-space limit and a wall-clock timeout, fixed session options (basic graph
optimisation, one thread, no custom-op libraries), and reports the model's inputs and outputs.
A crash or hang in native code therefore fails the check instead of the service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[2])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import onnxruntime as ort
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.log_severity_level = 3
session = ort.InferenceSession(sys.argv[1], sess_options=options, providers=["CPUExecutionProvider"])
describe = lambda args: [{"name": a.name, "type": a.type, "shape": [str(d) for d in a.shape]} for a in args]
print(json.dumps({"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}))
"""


@dataclass(frozen=True)
class LoadOutcome:
    loaded: bool
    details: str
    signature: dict[str, Any] = field(default_factory=dict)


def load_with_onnxruntime(model: Path, *, timeout_s: float, memory_limit_bytes: int) -> LoadOutcome:
    """Create an ORT session for ``model`` in an isolated interpreter (``python -I``)."""
    command = [sys.executable, "-I", "-c", _CHILD, str(model), str(memory_limit_bytes)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False, text=True)
    except subprocess.TimeoutExpired:
        return LoadOutcome(False, f"onnxruntime did not load the model within {timeout_s:.0f} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return LoadOutcome(False, f"onnxruntime refused the model (exit {done.returncode}): {last[:300]}")
    try:
        description = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return LoadOutcome(False, "onnxruntime child produced no description")
    return LoadOutcome(True, "onnxruntime session created", description)
