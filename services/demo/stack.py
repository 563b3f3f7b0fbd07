"""The demo's running system: a fresh real broker, a SQLite store, every service as its own process."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shared.broker.local import LocalBroker, free_port
from shared.db.engine import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.testing.processes import ServiceProcess

WORKERS = ("supply_chain", "scanner", "incident", "rollback", "telemetry", "remediation")


@dataclass
class Stack:
    home: Path
    bootstrap: str = ""
    db_url: str = ""
    server_url: str = ""
    broker: LocalBroker | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    _sessions: sessionmaker[Session] | None = None

    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = make_session_factory(make_engine(self.db_url))
        return self._sessions

    def start_infrastructure(self) -> float:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        began = time.monotonic()
        self.broker = LocalBroker(self.home / "kafka", port=free_port(), controller_port=free_port())
        self.bootstrap = self.broker.start()
        self.db_url = f"sqlite:///{(self.home / 'bdguard.db').resolve()}"
        upgrade(self.db_url)
        asyncio.run(ensure_topics(self.bootstrap, catalogue_partitions()))
        return time.monotonic() - began

    def env(self, public_key: Path, clean_data: Path, signing_key: Path) -> dict[str, str]:
        import orjson

        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "BDGUARD_DATABASE_URL": self.db_url,
                "BDGUARD_LOG_JSON": "true", "BDGUARD_LOG_LEVEL": "INFO",
                "BDGUARD_SUPPLY_CHAIN_PUBLIC_KEYS": orjson.dumps([str(public_key)]).decode(),
                "BDGUARD_SCANNER_DEFAULT_CLEAN_DATA": str(clean_data),
                "BDGUARD_INFERENCE_STRIP_CLEAN_DATA": str(clean_data),  # runtime STRIP entropies in telemetry
                "BDGUARD_SCANNER_REPORTS_DIR": str(self.home / "reports"),
                "BDGUARD_TELEMETRY_BASELINE_SIZE": "2000", "BDGUARD_TELEMETRY_WINDOW_S": "5",
                "BDGUARD_TELEMETRY_STEP_S": "5", "BDGUARD_TELEMETRY_LATENESS_S": "1",
                "BDGUARD_TELEMETRY_LINGER_MS": "100",
                # candidates are signed like any registry upload and published from the trusted source
                "BDGUARD_REMEDIATION_DEFAULT_CLEAN_DATA": str(clean_data),
                "BDGUARD_REMEDIATION_OUT_DIR": str(self.home / "remediated"),
                "BDGUARD_REMEDIATION_SOURCE_URL": "https://huggingface.co/acme/digits",
                "BDGUARD_REMEDIATION_SIGNING_KEY": str(signing_key)}

    def start_services(self, env: dict[str, str], model_name: str, model_path: Path, version: str) -> None:
        port = free_port()
        self.server_url = f"http://127.0.0.1:{port}"
        env = {**env, "BDGUARD_ROLLBACK_SERVING_URLS": f'["{self.server_url}"]'}
        logs = self.home / "logs"
        self.processes = [ServiceProcess(name, env, logs).start() for name in WORKERS]
        server_env = {**env, "BDGUARD_INFERENCE_MODEL_PATH": str(model_path),
                      "BDGUARD_INFERENCE_MODEL_NAME": model_name, "BDGUARD_INFERENCE_MODEL_VERSION": version,
                      "BDGUARD_INFERENCE_PORT": str(port), "BDGUARD_TELEMETRY_SERVER_ID": "demo-inference-1"}
        self.processes.append(ServiceProcess("inference_server", server_env, logs).start())
        self._wait_http(self.server_url + "/healthz")

    def _wait_http(self, url: str, wait_s: float = 60.0) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not come up; see {self.home / 'logs'}")

    def dead(self) -> list[str]:
        return [p.name for p in self.processes if not p.alive()]

    def stop(self) -> None:
        for p in self.processes:
            p.stop()
        if self.broker is not None:
            self.broker.stop()
