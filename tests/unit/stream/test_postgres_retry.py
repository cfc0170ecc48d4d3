"""The PostgreSQL sink waits out a server that is away, and only that (issue 12, case 6).

The connection is faked here; ``tests/integration/stream/test_postgres_outage.py`` restarts a
real server under a running job.
"""

from __future__ import annotations

import logging

import psycopg
import pyarrow as pa
import pytest

from stockpulse.errors import ServiceError, ServiceUnavailable
from stockpulse.schema import REASON_COLUMN
from stockpulse.stream.sinks import postgres as sink_module
from stockpulse.stream.sinks.postgres import PostgresSink, backoff_delays, is_transient


def test_backoff_doubles_up_to_a_cap_within_the_budget():
    assert backoff_delays(10) == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delays(40) == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert sum(backoff_delays(120)) <= 120
    assert backoff_delays(0) == []


@pytest.mark.parametrize("exc, transient", [
    (ServiceUnavailable("cannot connect"), True),
    (psycopg.OperationalError("server closed the connection unexpectedly"), True),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg.InterfaceError("the connection is closed"), True),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (psycopg.errors.UndefinedTable("relation ticks_raw does not exist"), False),
    (ServiceError("postgresql://x is not a URL libpq can parse"), False),
    (ValueError("a bug"), False),
])
def test_only_a_connection_that_broke_is_worth_a_retry(exc, transient):
    assert is_transient(exc) is transient


def _table():
    return pa.table({"close": [1.0], REASON_COLUMN: pa.array([None], pa.string())})


class FlakySink(PostgresSink):
    """Fails its first ``failures`` writes with ``error``, then succeeds."""

    def __init__(self, failures: int, error: Exception, retry_seconds: float) -> None:
        super().__init__("postgresql://stockpulse:s3cret@127.0.0.1:1/stocks", retry_seconds)
        self.failures, self.error, self.attempts = failures, error, 0

    def _write_once(self, good, bad):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return good.num_rows, bad.num_rows


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch):
    slept = []
    monkeypatch.setattr(sink_module.time, "sleep", slept.append)
    return slept


def test_a_restart_is_waited_out_and_each_wait_is_logged(no_sleeping, caplog):
    sink = FlakySink(3, psycopg.errors.AdminShutdown("terminating connection due to administrator command"), 120)
    with caplog.at_level(logging.WARNING, logger=sink_module.__name__):
        assert sink.write_arrow(_table(), 7) == (1, 0)
    assert sink.attempts == 4 and no_sleeping == [0.5, 1.0, 2.0]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and all("batch 7: PostgreSQL unavailable (AdminShutdown" in w for w in warnings)


def test_an_outage_longer_than_the_budget_ends_in_one_line_without_the_password(no_sleeping):
    sink = FlakySink(100, ServiceUnavailable("cannot connect to PostgreSQL: Connection refused"), 10)
    with pytest.raises(ServiceError) as caught:
        sink.write_arrow(_table(), 3)
    message = str(caught.value)
    assert sink.attempts == 5 and "\n" not in message and "s3cret" not in message
    assert "did not come back within 10 s (POSTGRES_RETRY_SECONDS) while writing batch 3" in message
    assert "Connection refused" in message


def test_an_error_in_the_data_is_not_retried(no_sleeping):
    sink = FlakySink(1, psycopg.errors.NumericValueOutOfRange("numeric field overflow"), 120)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        sink.write_arrow(_table(), 1)
    assert sink.attempts == 1 and no_sleeping == []


@pytest.mark.parametrize("message, sqlstate, lasting", [
    ('FATAL:  password authentication failed for user "stockpulse"', None, True),
    ("fe_sendauth: no password supplied", None, True),
    ('FATAL:  database "stocks" does not exist', None, True),
    ("anything", "28P01", True),
    ("anything", "3D000", True),
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', None, False),
    ("FATAL:  the database system is starting up", "57P03", False),
    ("FATAL:  terminating connection due to administrator command", "57P01", False),
])
def test_a_server_that_refuses_the_credentials_is_not_waited_for(message, sqlstate, lasting):
    """Bad credentials or a missing database fail at once with their own message, instead of
    120 s of retries ending in "did not come back"."""
    from stockpulse.db import lasting_failure

    assert lasting_failure(message, sqlstate) is lasting
