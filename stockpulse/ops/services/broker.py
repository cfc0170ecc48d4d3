"""The embedded broker: a single-node Apache Kafka 4 in KRaft mode (one process is both broker
and controller), run from jars resolved from the Maven registry (:mod:`stockpulse.jars`).

Why the real broker: its log lives on disk under the state directory, so every message survives
``make down`` / ``make up``, a ``kill -9`` of the broker and a restart of the machine's services,
and it answers every Kafka API (ListOffsets included) the way a production cluster does, so the
official Spark source, the producer and the tools behave here exactly as they will there.

Everything listens on 127.0.0.1 only; the JVM heap is bounded (``KAFKA_EMBEDDED_HEAP``).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stockpulse.errors import ServiceError
from stockpulse import jars
from stockpulse.ops.services.processes import port_open, read_pid, start_detached, stop_detached, wait_for_port

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0  # a controlled shutdown flushes and closes every log segment

LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


def server_properties(port: int, controller_port: int, log_dir: Path, partitions: int,
                      node_id: int = 1, voters: str | None = None, replication: int = 1) -> str:
    """A node's configuration: loopback only, durable logs under ``log_dir``, broker and
    controller in one process.

    Alone (the default) the node is its own controller quorum and every replication factor is 1.
    In a local cluster (:mod:`stockpulse.ops.services.kafka_cluster`) ``voters`` names every
    node's controller listener and ``replication`` (3) applies to topics and internal topics alike,
    with ``min.insync.replicas`` one less, so one node may be down while ``acks=all`` still
    succeeds. Group rebalances start at once (no three-second wait for members that never come);
    topics get ``partitions`` partitions by default.
    """
    min_isr = max(1, replication - 1)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters or f'{node_id}@127.0.0.1:{controller_port}'}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={log_dir}",
        f"num.partitions={partitions}",
        f"default.replication.factor={replication}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replication}",
        f"transaction.state.log.replication.factor={replication}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replication}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "num.io.threads=2",
        "num.network.threads=2",
        "num.recovery.threads.per.data.dir=1",
        "log.retention.hours=168",
        "",
    ])


def cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's form).

    Never one starting with ``-``: ``kafka-storage format -t -x...`` reads it as an option (one
    start in 64 failed so); Kafka's own ``Uuid.randomUuid`` draws again for the same reason.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


@dataclass(frozen=True)
class EmbeddedKafka:
    """One Apache Kafka node under ``home`` (``config/``, ``data/``), logging to ``log_file``.

    Alone by default; ``node_id``, ``voters``, ``replication`` and a shared ``cluster_id`` make it
    one node of a local cluster (:class:`stockpulse.ops.services.kafka_cluster.KafkaCluster`).
    """

    home: Path
    port: int
    controller_port: int
    log_file: Path
    pid_file: Path
    heap: str = "512m"
    partitions: int = 3
    node_id: int = 1
    voters: str | None = None
    replication: int = 1
    cluster_id: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME", "").strip()
        candidate = Path(java_home) / "bin" / "java" if java_home else None
        found = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
        if not found:
            raise ServiceError("Java 17+ is needed for the Kafka broker: 'make up' installs it, or set JAVA_HOME")
        return found

    def _classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in jars.resolve(jars.KAFKA_BROKER))

    def _write_config(self) -> Path:
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        properties = config / "server.properties"
        properties.write_text(server_properties(self.port, self.controller_port, self.data_dir, self.partitions,
                                                self.node_id, self.voters, self.replication))
        return properties

    def _format(self, java: str, classpath: str, properties: Path) -> None:
        """Format the log directory once (KRaft needs a cluster id on disk); later starts reuse it."""
        if (self.data_dir / "meta.properties").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [java, "-Xmx256m", f"-Dlog4j2.configurationFile={properties.parent / 'log4j2.properties'}",
             "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", self.cluster_id or cluster_id(),
             "-c", str(properties),
             "--ignore-formatted"],
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ServiceError(f"formatting the Kafka log directory {self.data_dir} failed: "
                               f"{detail[-1] if detail else 'exit ' + str(result.returncode)}")
        logger.info("formatted the Kafka log directory %s", self.data_dir)

    def command(self, java: str, classpath: str, properties: Path) -> list[str]:
        return [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:MaxMetaspaceSize=128m", "-XX:MaxDirectMemorySize=256m", "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={properties.parent / 'log4j2.properties'}",
            "-cp", classpath, "kafka.Kafka", str(properties),
        ]

    def start(self) -> None:
        """Start the node detached (idempotent) and wait until it answers as a broker."""
        started = time.monotonic()
        if not self.launch():
            return
        self.wait_ready()
        logger.info("Kafka broker ready on %s in %.1f s (data in %s)", self.bootstrap, time.monotonic() - started,
                    self.data_dir)

    def launch(self) -> bool:
        """Start the process without waiting for it to serve (a cluster's nodes must all be
        launched before any can elect a controller); False when it already runs."""
        if read_pid(self.pid_file):
            logger.info("the Kafka broker already runs (%s)", self.bootstrap)
            return False
        for port in (self.port, self.controller_port):
            if port_open("127.0.0.1", port):
                raise ServiceError(
                    f"port {port} is already taken by another program: stop it, or set KAFKA_EMBEDDED_PORT / "
                    "KAFKA_EMBEDDED_CONTROLLER_PORT, or point KAFKA_BOOTSTRAP_SERVERS at that broker")
        java, classpath = self._java(), self._classpath()
        properties = self._write_config()
        self._format(java, classpath, properties)
        start_detached(f"broker {self.node_id}", self.command(java, classpath, properties), self.pid_file,
                       self.log_file)
        return True

    def wait_ready(self) -> None:
        wait_for_port("127.0.0.1", self.port, START_TIMEOUT_SECONDS, "the Kafka broker", self.log_file)
        wait_until_serving(self.bootstrap, START_TIMEOUT_SECONDS, self.log_file)

    def stop(self) -> bool:
        return stop_detached("broker", self.pid_file, timeout=STOP_TIMEOUT_SECONDS)

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None


def wait_until_serving(bootstrap: str, timeout: float, log_file: Path | None = None) -> None:
    """Block until the broker answers a metadata request with itself as a live broker.

    An open port is not enough: the listener accepts connections while the node is still
    replaying its metadata log, and clients then see "no brokers available" for a while.
    """
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 0})
    while True:
        try:
            if admin.list_topics(timeout=5).brokers:
                return
        except Exception as exc:  # KafkaException while the node is still starting
            logger.debug("broker not serving yet: %s", exc)
        if time.monotonic() > deadline:
            hint = f"; see {log_file}" if log_file else ""
            raise ServiceError(f"the Kafka broker at {bootstrap} did not serve within {timeout:.0f} s{hint}")
        time.sleep(0.3)


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, timeout: float = 60.0) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True when created.

    Replication is the cluster's default (``default.replication.factor``): 1 on the embedded node,
    whatever a real cluster's operators chose there.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": 10_000, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        try:
            if topic in admin.list_topics(timeout=10).topics:
                return False
            admin.create_topics([NewTopic(topic, partitions)], operation_timeout=30)[topic].result(timeout=30)
            logger.info("created topic %s with %d partitions", topic, partitions)
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:  # someone else won
                return False
            if time.monotonic() > deadline:
                detail = error.str() if hasattr(error, "str") else str(exc)
                raise ServiceError(f"cannot create topic {topic!r} on Kafka at {bootstrap_servers}: {detail}") from None
            time.sleep(0.5)
