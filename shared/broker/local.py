"""A real single-node KRaft Apache Kafka broker run from its Maven Central jars with ``java -cp``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shared.broker.jars import DEFAULT_LIBS_DIR, BrokerSetupError, ensure_jars

READY_LINE = "Kafka Server started"

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir / "logs"}
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=168
"""


def _alive(pid: int) -> bool:
    try:
        # reap it when it is our own child, so a zombie does not look alive
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LocalBroker:
    """Owns one broker's data dir: ``server.properties``, storage, pid file and log."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    libs_dir: Path = DEFAULT_LIBS_DIR
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and port_open("127.0.0.1", self.port)

    def _classpath(self) -> str:
        return str(ensure_jars(self.libs_dir) / "*")

    def _java(self, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerSetupError("java is not installed (OpenJDK 17 runs the broker)")
        cmd = [java, f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}", "-cp",
               self._classpath(), *args]
        return subprocess.run(cmd, capture_output=capture, text=True, check=False)

    def prepare(self) -> Path:
        """Write config and format storage once; later calls keep the data (``--ignore-formatted``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j.properties").write_text(LOG4J)
        props = self.data_dir / "server.properties"
        props.write_text(server_properties(self.data_dir, self.port, self.controller_port))
        cluster_file = self.data_dir / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(uuid.uuid4().hex[:22])
        cluster_id = cluster_file.read_text().strip()
        fmt = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                         "--ignore-formatted")
        if fmt.returncode != 0:
            raise BrokerSetupError(f"kafka storage format failed: {fmt.stdout}{fmt.stderr}")
        return props

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker detached and wait until it serves; returns the bootstrap address."""
        if self.is_running():
            return self.bootstrap
        if port_open("127.0.0.1", self.port):
            raise BrokerSetupError(f"port {self.port} is taken by another process")
        props = self.prepare()
        java = shutil.which("java") or "java"
        log = self.log_file.open("w")
        proc = subprocess.Popen(
            [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
             f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
             "-cp", self._classpath(), "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(proc, timeout)
        return self.bootstrap

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerSetupError(f"broker exited ({proc.returncode}); log tail:\n{self._log_tail()}")
            if port_open("127.0.0.1", self.port) and READY_LINE in self.log_file.read_text(errors="replace"):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerSetupError(f"broker not ready in {timeout:.0f}s; log tail:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL); returns whether one was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
