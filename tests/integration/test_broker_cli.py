"""`bdguard broker start|status|stop` runs the same real broker the tests use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.broker.local import free_port, port_open


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from services.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def test_the_broker_command_starts_reports_and_stops_a_real_broker(tmp_path: Path) -> None:
    port, cport = free_port(), free_port()
    where = ["--port", str(port), "--controller-port", str(cport), "--data-dir", str(tmp_path / "k")]
    try:
        started = _cli("broker", "start", *where)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert port_open("127.0.0.1", port)
        status = _cli("broker", "status", *where)
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        assert _cli("broker", "start", *where).returncode == 0  # idempotent: already running
    finally:
        stopped = _cli("broker", "stop", *where)
    assert "broker stopped" in stopped.stderr
    after = _cli("broker", "status", *where)
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False
