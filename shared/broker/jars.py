"""Fetch the Apache Kafka broker jars from Maven Central (no Docker, no Apache mirror needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "kafka" / "pom.xml"
DEFAULT_LIBS_DIR = REPO_ROOT / "kafka" / "libs"
MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"


class BrokerSetupError(RuntimeError):
    """The local broker could not be installed or started."""


def jars_present(libs_dir: Path) -> bool:
    return (libs_dir / MARKER_JAR).is_file() and any(libs_dir.glob("reload4j-*.jar"))


def ensure_jars(libs_dir: Path = DEFAULT_LIBS_DIR) -> Path:
    """Copy the broker jars into ``libs_dir`` with Maven unless they are already there (idempotent)."""
    if jars_present(libs_dir):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError("Maven (mvn) is not installed: it is needed once to fetch the Kafka jars")
    libs_dir.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs_dir}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not jars_present(libs_dir):
        raise BrokerSetupError(f"fetching Kafka jars failed ({result.returncode}): {result.stdout[-2000:]}")
    return libs_dir
