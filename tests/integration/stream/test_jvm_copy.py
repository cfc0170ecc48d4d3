"""The JVM PostgreSQL writer (COPY from Spark's executors) against a real Spark and PostgreSQL.

What is proved, and why it matters:

- it stores exactly what the Python writer stores: the same batch, written by each into its own
  database, gives the same rows in both tables, awkward text included (quotes, commas, newlines,
  an empty string that must not become NULL, a lone ``\\.`` line, non-ASCII). The CSV is built in
  Spark SQL from the schema, so a type the encoder gets wrong shows here;
- a replayed batch, or one overlapping an earlier one, stores only the records it has not stored;
  exactly-once still comes from the Kafka identity key;
- a server that cannot be reached is retried, then named in one line; an error in the data or
  the SQL is not retried.

No broker: the batches are DataFrames made from the Arrow tables ``test_postgres_sink`` builds,
the shape ``to_ticks`` gives ``foreachBatch``.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from stockpulse.db import apply_init_sql, connect
from stockpulse.errors import ServiceError
from stockpulse.ops.services.processes import free_port
from stockpulse.stream.sinks.jvm_copy import JdbcTarget, JvmCopySink, jdbc_target
from stockpulse.stream.sinks.postgres import PostgresSink
from tests.integration.stream.test_postgres_sink import batch, dead_letter, keys, tick

AWKWARD = ['line one\nline "two", with a comma', "", "\\.", "tab\there, ünïcödé ✓", '"', "a\r\nb"]


@pytest.fixture(scope="module")
def spark():
    """A local Spark session with the writer's jars, as the job builds it (two task slots)."""
    import os
    import sys

    from pyspark.sql import SparkSession

    from stockpulse.jars import postgres_copy_jars

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("stockpulse-jvm-copy-test")
               .config("spark.jars", ",".join(str(jar) for jar in postgres_copy_jars()))
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def second_database(pg_server):
    """Another fresh database on the session's server, for the Python writer's copy."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER stockpulse')
    url = pg_server.url_for(name)
    apply_init_sql(url)
    yield url
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def frame(spark, rows, partitions: int = 3):
    """The batch as Spark holds it, spread over ``partitions`` tasks."""
    return spark.createDataFrame(batch(rows)).repartition(partitions)


def stored(url: str) -> tuple[list, list]:
    """Every column of both tables but the commit time, in key order."""
    with connect(url) as conn:
        ticks = conn.execute("SELECT * FROM ticks_raw ORDER BY kafka_partition, kafka_offset").fetchall()
        dead = conn.execute("SELECT kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, kafka_key, "
                            "raw_value, reason FROM ticks_dead_letter ORDER BY kafka_partition, kafka_offset").fetchall()
    return [row[:-1] for row in ticks], dead  # ticks_raw's last column is landed_at


def test_the_jvm_writer_stores_exactly_what_the_python_writer_stores(spark, database_url, second_database):
    rows = [tick(o, partition=o % 3) for o in range(30)]
    rows += [dead_letter(100 + i, text) for i, text in enumerate(AWKWARD)]
    rows += [dead_letter(200, None, "empty message")]
    with_null_prices = tick(300)
    with_null_prices.update(open=None, high=None, low=None, adj_close=None, close_usd=None)
    rows.append(with_null_prices)
    awkward_index = tick(301)
    awkward_index["index"] = 'N"Y, A'
    rows.append(awkward_index)

    JvmCopySink(database_url)(frame(spark, rows), 0)
    PostgresSink(second_database).write_arrow(batch(rows))
    jvm, python = stored(database_url), stored(second_database)
    assert len(jvm[0]) == 32 and len(jvm[1]) == len(AWKWARD) + 1
    assert jvm == python
    assert [r[5] for r in jvm[1]][:len(AWKWARD)] == AWKWARD  # "" stayed "", not NULL


def test_a_replayed_or_overlapping_batch_stores_only_new_records(spark, database_url):
    sink = JvmCopySink(database_url)
    first = [tick(o) for o in range(10)] + [dead_letter(10, "{")]
    assert sink.write(frame(spark, first)) == (10, 1)
    assert sink.write(frame(spark, first)) == (0, 0)
    overlapping = [tick(o) for o in range(5, 15)] + [dead_letter(10, "{"), dead_letter(15, "[")]
    assert sink.write(frame(spark, overlapping)) == (5, 1)
    assert keys(database_url) == [(0, o) for o in range(15)]
    assert keys(database_url, "ticks_dead_letter") == [(0, 10), (0, 15)]


def test_an_unreachable_server_is_retried_then_named_in_one_line(spark, database_url):
    closed = JdbcTarget(f"jdbc:postgresql://127.0.0.1:{free_port()}/nowhere", "stockpulse", None)
    sink = JvmCopySink(database_url, retry_seconds=1, target=closed)
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        sink(frame(spark, [tick(0)]), 4)
    message = str(raised.value)
    assert "did not come back within 1 s (POSTGRES_RETRY_SECONDS) while writing batch 4" in message
    assert "PostgreSQL unavailable [08001]" in message and "\n" not in message
    assert time.monotonic() - started >= 0.5  # one backoff sleep: it was retried
    assert keys(database_url) == []


def test_an_error_in_the_data_is_not_retried(spark, database_url):
    broken = dead_letter(1, "x")
    broken["kafka_topic"] = None  # violates NOT NULL in ticks_dead_letter
    sink = JvmCopySink(database_url, retry_seconds=60)
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        sink(frame(spark, [tick(0), broken], partitions=1), 1)
    message = str(raised.value)
    assert "writing batch 1 to PostgreSQL at" in message and "\n" not in message
    assert 'failed: PSQLException: ERROR: null value in column "kafka_topic"' in message  # not py4j's line
    assert time.monotonic() - started < 30  # no minute of retries
    assert keys(database_url) == []  # the partition's ticks went with its dead letter


def test_the_jdbc_target_is_what_libpq_connected_with(database_url, pg_server):
    target = jdbc_target(database_url)  # the embedded URL names a passfile, not a password
    database = urlsplit(database_url).path.lstrip("/")
    assert target.url == f"jdbc:postgresql://127.0.0.1:{pg_server.port}/{database}"
    assert target.user == "stockpulse" and target.password
    assert target.password not in repr(target)
