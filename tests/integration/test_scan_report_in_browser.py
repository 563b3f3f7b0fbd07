"""The HTML scan report in a real browser (Debian's headless Chromium, installed by ``.ci/chromium.sh``).

The page is self-contained: every picture (reversed triggers, per-class bar charts, the dormant-feature map)
is an inline PNG. A browser must decode every one of them and show the verdict. The test renders a copy
of the page with a small script that counts the decoded images once it has loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from typer.testing import CliRunner

from benchmarks.zoo.attacks import Attack, poison
from benchmarks.zoo.nets import NetSpec, build, train
from services.scanner.entrypoints.cli import register
from tests.unit.conftest import held_out_digits

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
FRAME = Attack("frame", target=3, rate=0.1, size=1, row=7, col=0, pattern_seed=1)
COUNT_IMAGES = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-images', images.length);
  document.body.setAttribute('data-decoded', images.filter(i => i.complete && i.naturalWidth > 0).length);
});
</script>"""
# flags for a closed network (no background connections, no component updates), as root, without a GPU
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("BDGUARD_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        if IN_CI:
            pytest.fail("no Chromium for the browser tests: `bash .ci/chromium.sh` installs it")
        pytest.skip("no Chromium (`bash .ci/chromium.sh` installs it)")
    return path


def _render(chromium: str, page: Path) -> str:
    """The page's DOM after load, as headless Chromium built it."""
    with tempfile.TemporaryDirectory(prefix="bdguard-chromium-") as profile:
        done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_the_scan_report_shows_its_verdict_and_every_picture_in_a_browser(chromium: str, tmp_path: Path) -> None:
    x, y, te, tr = held_out_digits()
    xp, yp, _ = poison(x[tr], y[tr], FRAME, seed=1)
    spec = NetSpec("mlp", 32, "Relu")
    onnx.save(build(spec, xp.shape[1:], 10, train(spec, xp, yp, 10, epochs=30, seed=4)), tmp_path / "m.onnx")
    np.savez(tmp_path / "clean.npz", x=x[te], y=y[te])
    app = typer.Typer()
    register(app)
    page = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "m.onnx"), "--clean-data", str(tmp_path / "clean.npz"),
                                   "--html", str(page)])
    assert res.exit_code == 1, res.output
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", COUNT_IMAGES + "</body>"), encoding="utf-8")
    dom = _render(chromium, probe)
    found = re.search(r'data-images="(\d+)" data-decoded="(\d+)"', dom)
    assert found, dom[:500]
    images, decoded = int(found[1]), int(found[2])
    # a reversed trigger, a bar chart per detector that scores classes, the dormant-feature map
    assert images >= 5 and decoded == images
    assert "BACKDOOR DETECTED" in dom and "dormant features pushing toward class 3" in dom
