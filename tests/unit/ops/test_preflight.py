"""Preflight messages name the service that is down and how to start it (closed ports, no services)."""

from __future__ import annotations

import pytest

from stockpulse.config import StackSettings
from stockpulse.errors import ServiceError
from stockpulse.ops.preflight import broker_addresses, check_broker, check_postgres
from stockpulse.ops.services.processes import free_port


def test_bootstrap_lists_are_parsed():
    assert broker_addresses("a:9092, b:9093") == [("a", 9092), ("b", 9093)]
    assert broker_addresses("[::1]:9092") == [("::1", 9092)]
    with pytest.raises(ServiceError, match="not host:port"):
        broker_addresses("nohost")


def test_a_down_broker_is_named_with_how_to_start_it():
    embedded = StackSettings.from_env({"KAFKA_EMBEDDED_PORT": str(free_port())})
    with pytest.raises(ServiceError, match=r"Kafka broker at 127\.0\.0\.1:\d+ is down: start it with 'make services'"):
        check_broker(embedded)
    external = StackSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    with pytest.raises(ServiceError, match="fix KAFKA_BOOTSTRAP_SERVERS"):
        check_broker(external)


def test_a_down_postgres_is_named_with_how_to_start_it():
    s = StackSettings.from_env({"DATABASE_URL": f"postgresql://u:secret@127.0.0.1:{free_port()}/db"})
    with pytest.raises(ServiceError, match="PostgreSQL is down: .*make services") as caught:
        check_postgres(s)
    assert "secret" not in str(caught.value)
