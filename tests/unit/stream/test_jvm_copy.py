"""Choosing and addressing the JVM PostgreSQL writer: pure parts, no Spark, no server."""

from __future__ import annotations

import pytest

from stockpulse.config import PostgresSettings
from stockpulse.errors import ConfigError
from stockpulse.stream.job import postgres_writer_jars, refuse_loopback_for_remote_executors, use_jvm_writer
from stockpulse.stream.sinks.jvm_copy import (
    JdbcTarget, is_unavailable, java_cause, jdbc_url, target, unavailable_cause,
)
from stockpulse.schema import DEAD_LETTER_FIELDS


class FakeConf(dict):
    def contains(self, key: str) -> bool:
        return key in self


def test_the_jdbc_url_carries_host_port_database_and_the_tls_settings_only():
    assert jdbc_url("127.0.0.1", 5432, "stocks", {}) == "jdbc:postgresql://127.0.0.1:5432/stocks"
    assert jdbc_url("db.example", "6543", "my db", {"sslmode": "require", "passfile": "/x", "options": ""}) == \
        "jdbc:postgresql://db.example:6543/my%20db?sslmode=require"
    # a search_path decides where ticks_raw is: it travels with the URL
    assert jdbc_url("h", 1, "d", {"options": "-c search_path=pipe"}) == \
        "jdbc:postgresql://h:1/d?options=-c+search_path%3Dpipe"
    assert jdbc_url("::1", 5432, "s", {}) == "jdbc:postgresql://[::1]:5432/s"


@pytest.mark.parametrize("host", ["/var/run/postgresql", "", "@abstract"])
def test_a_unix_socket_is_refused_with_the_way_out(host):
    with pytest.raises(ConfigError, match="POSTGRES_WRITER=python"):
        jdbc_url(host, 5432, "s", {})


def test_the_target_never_shows_its_password():
    shown = repr(JdbcTarget("jdbc:postgresql://h:1/d", "u", "s3cret"))
    assert "s3cret" not in shown and "jdbc:postgresql://h:1/d" in shown


def test_a_copy_target_names_the_columns_in_schema_order():
    assert target("ticks_dead_letter", DEAD_LETTER_FIELDS) == (
        'ticks_dead_letter ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", '
        '"kafka_key", "raw_value", "reason")')


def test_only_a_lost_connection_is_worth_a_retry_and_its_line_is_kept():
    java = ("An error occurred while calling z:io.stockpulse.sink.PostgresCopy.write.\n"
            ": org.apache.spark.SparkException: Job aborted due to stage failure: ... "
            "io.stockpulse.sink.PostgresCopy$Unavailable: PostgreSQL unavailable [08001]: Connection to "
            "127.0.0.1:1 refused.\n"
            "\tat io.stockpulse.sink.PostgresCopy$Writer.borrow(PostgresCopy.java:180)")
    assert is_unavailable(RuntimeError(java))
    assert unavailable_cause(RuntimeError(java)) == "PostgreSQL unavailable [08001]: Connection to 127.0.0.1:1 refused."
    assert not is_unavailable(RuntimeError("ERROR: null value in column \"kafka_topic\" violates not-null"))
    # a dead letter quoting the words in a failing row's detail is no lost connection
    assert not is_unavailable(RuntimeError('Detail: Failing row contains (PostgreSQL unavailable [08001]).'))


def test_a_refused_batch_is_named_by_what_postgresql_said_not_by_py4j():
    trace = ("An error occurred while calling z:io.stockpulse.sink.PostgresCopy.write.\n"
             ": org.apache.spark.SparkException: Job aborted due to stage failure: Lost task 0.0: "
             "org.postgresql.util.PSQLException: ERROR: relation \"ticks_raw\" does not exist\n"
             "\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2733)\n"
             "Caused by: org.postgresql.util.PSQLException: ERROR: relation \"ticks_raw\" does not exist\n")
    assert java_cause(trace) == 'PSQLException: ERROR: relation "ticks_raw" does not exist'
    assert java_cause("Caused by: java.lang.IllegalArgumentException: bad URL\n") == "IllegalArgumentException: bad URL"
    assert java_cause("something odd\nmore") == "something odd"


@pytest.mark.parametrize("url, master, refused", [
    ("jdbc:postgresql://127.0.0.1:5432/stocks", "spark://10.0.0.5:7077", True),
    ("jdbc:postgresql://localhost/stocks", "yarn", True),
    ("jdbc:postgresql://[::1]:5432/stocks", "k8s://https://api:6443", True),
    ("jdbc:postgresql://127.0.0.1:5432/stocks", "local[2]", False),
    ("jdbc:postgresql://127.0.0.1:5432/stocks", "spark://127.0.0.1:7077", False),
    ("jdbc:postgresql://db.internal:5432/stocks", "spark://10.0.0.5:7077", False),
])
def test_executors_elsewhere_are_not_sent_to_their_own_loopback(url, master, refused):
    if refused:
        with pytest.raises(ConfigError, match="POSTGRES_WRITER=python"):
            refuse_loopback_for_remote_executors(url, master)
    else:
        refuse_loopback_for_remote_executors(url, master)


@pytest.mark.parametrize("wanted, on_classpath, expected", [
    ("python", True, False), ("auto", True, True), ("auto", False, False), ("jvm", True, True),
])
def test_which_writer_runs(wanted, on_classpath, expected):
    assert use_jvm_writer(wanted, on_classpath) is expected


def test_asking_for_the_jvm_writer_without_it_stops_with_one_line():
    with pytest.raises(ConfigError, match="POSTGRES_WRITER=jvm but the JVM writer is not on the classpath"):
        use_jvm_writer("jvm", False)


def test_no_jars_are_added_when_not_wanted_already_given_or_too_late(monkeypatch):
    assert postgres_writer_jars("python", FakeConf()) == []
    assert postgres_writer_jars("auto", FakeConf({"spark.jars": "/x/stockpulse-postgres-copy.jar"})) == []
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")  # under spark-submit the JVM runs already
    assert postgres_writer_jars("auto", FakeConf()) == []


def test_postgres_writer_is_validated():
    assert PostgresSettings.from_env({}).writer == "auto"
    assert PostgresSettings.from_env({"POSTGRES_WRITER": "JVM"}).writer == "jvm"
    with pytest.raises(ConfigError, match="POSTGRES_WRITER='jdbc': use auto, jvm, python"):
        PostgresSettings.from_env({"POSTGRES_WRITER": "jdbc"})
