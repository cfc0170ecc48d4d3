"""Before touching the consumer: PostgreSQL answers, the broker answers, the topic exists, Java is
installed, and the schema is applied. Each failure names the service and how to start it."""

from __future__ import annotations

import logging
import shutil

from stockpulse.config import StackSettings, redact_url
from stockpulse.errors import ServiceError
from stockpulse.ops.services import processes

logger = logging.getLogger(__name__)


def broker_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """(host, port) pairs of a ``host:port,host:port`` bootstrap list (IPv6 in brackets allowed)."""
    pairs = []
    for entry in filter(None, (e.strip() for e in bootstrap.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise ServiceError(f"KAFKA_BOOTSTRAP_SERVERS entry {entry!r} is not host:port")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def start_hint(embedded: bool, variable: str) -> str:
    return "start it with 'make services' (or 'make up')" if embedded else f"start it, or fix {variable}"


def check_broker(s: StackSettings) -> list[int]:
    """The topic's partitions; raises when no broker answers or the topic is missing."""
    from stockpulse.kafka_offsets import KafkaOffsetsError, topic_partitions

    addresses = broker_addresses(s.kafka.bootstrap_servers)
    if not any(processes.port_open(host, port, timeout=3) for host, port in addresses):
        raise ServiceError(f"Kafka broker at {s.kafka.bootstrap_servers} is down: "
                           f"{start_hint(s.kafka.embedded, 'KAFKA_BOOTSTRAP_SERVERS')}")
    try:
        partitions = topic_partitions(s.kafka.bootstrap_servers, s.kafka.topic)
    except KafkaOffsetsError as exc:
        raise ServiceError(f"{exc}: "
                           f"{start_hint(s.kafka.embedded, 'KAFKA_BOOTSTRAP_SERVERS')}") from None
    if not partitions:
        raise ServiceError(f"topic {s.kafka.topic!r} does not exist on {s.kafka.bootstrap_servers}: "
                           "'make services' creates it (or fix KAFKA_TOPIC)")
    return partitions


def check_postgres(s: StackSettings) -> None:
    """Connect and apply init.sql (idempotent; it holds the quality checks' table too)."""
    from stockpulse.db import apply_init_sql

    try:
        apply_init_sql(s.postgres.url)
    except ServiceError as exc:
        raise ServiceError(f"PostgreSQL is down: {exc}") from None


def check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java is not on PATH, so the Spark consumer cannot start: run 'make sysdeps' "
                           "(installs openjdk-17-jre-headless) or set JAVA_HOME/PATH for Airflow")
    return java


def run(s: StackSettings) -> dict:
    """All checks; returns what was found, for the task log and XCom."""
    check_postgres(s)
    partitions = check_broker(s)
    java = check_java()
    logger.info("preflight ok: PostgreSQL %s, broker %s, topic %s (%d partitions), java %s",
                redact_url(s.postgres.url), s.kafka.bootstrap_servers, s.kafka.topic, len(partitions), java)
    return {"postgres": redact_url(s.postgres.url), "broker": s.kafka.bootstrap_servers,
            "topic": s.kafka.topic, "partitions": partitions}
