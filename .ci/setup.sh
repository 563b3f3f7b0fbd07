#!/usr/bin/env bash
# One-time, idempotent setup on a fresh machine: virtualenv, the project (editable, dev extras),
# and the Kafka broker jars from Maven Central. Re-runs are cheap (a stamp keyed on pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.bdguard-installed
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$WANT" > "$STAMP"
fi
.venv/bin/python -c "from shared.broker.jars import ensure_jars; print('kafka jars:', ensure_jars())"
