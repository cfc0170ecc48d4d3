"""The Airflow task bodies (stockpulse/ops/tasks.py), called as the DAG calls them, against the
test PostgreSQL and broker.

The DAG's tasks are thin wrappers that read their settings from the worker's environment, so
each test sets that environment (as ``pipeline_env`` builds it) and calls the task body
directly. What is proved: preflight passes with the services up, reports what it found and
applies the schema to an empty database; it fails with one clear line when the topic is missing,
and does not create the topic; the quality task fails on a row whose trade_value is not
close * volume, names the check and the counts, then moves its window on; the health report on a
quiet topic reports zero lag and no rows, counts the records that wait when no consumer runs,
counts the rows landed since the last quality check, and is red when no consumer runs in
supervise mode. ``supervise_task`` starts or runs the Spark consumer, so only its argument check
is exercised here (the end-to-end Airflow tests cover the rest).
"""

from __future__ import annotations

import shutil
import uuid

import psycopg
import pytest

from stockpulse.db import connect
from stockpulse.errors import ServiceError, StockPulseError
from stockpulse.kafka_offsets import topic_partitions
from stockpulse.ops import tasks

SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "DATABASE_URL", "LAKE_PATH", "CHECKPOINT_DIR",
            "STOCKPULSE_STATE_DIR")


@pytest.fixture
def worker_env(pipeline_env, monkeypatch):
    """The Airflow worker's environment, pointing at this test's database, topic and directories."""
    for name in SETTINGS:
        monkeypatch.setenv(name, pipeline_env[name])
    return pipeline_env


INSERT = """
INSERT INTO ticks_raw (stream_ts, date, index, open, high, low, close, volume, trade_value,
                       kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
VALUES (now(), '2021-05-28', 'HSI', 10.5, 11, 10, 10.25, 3, %(trade_value)s, 't', 0, %(offset)s, now())
"""


def insert_ticks(url: str, trade_values: list[str], first_offset: int = 0) -> None:
    with connect(url) as conn:
        for offset, trade_value in enumerate(trade_values, start=first_offset):
            conn.execute(INSERT, {"trade_value": trade_value, "offset": offset})


def send(broker: str, topic: str, per_partition: dict[int, int]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker, "acks": "all"})
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, key=b"HSI", value=f'{{"n": {i}}}'.encode(), partition=partition)
    assert producer.flush(30) == 0


# -- preflight -----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("java") is None, reason="preflight requires java on PATH")
def test_preflight_passes_with_the_services_up_and_applies_the_schema(worker_env, pg_server, monkeypatch):
    fresh = f"p_{uuid.uuid4().hex[:12]}"
    admin = pg_server.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh}" OWNER stockpulse')
    try:
        url = pg_server.url_for(fresh)
        monkeypatch.setenv("DATABASE_URL", url)
        assert tasks.preflight_task() == {"postgres": url, "broker": worker_env["KAFKA_BOOTSTRAP_SERVERS"],
                                          "topic": worker_env["KAFKA_TOPIC"], "partitions": [0, 1, 2]}
        with connect(url) as conn:
            present = conn.execute("SELECT to_regclass('ticks_raw') IS NOT NULL, "
                                   "to_regclass('ticks_dead_letter') IS NOT NULL, "
                                   "to_regclass('stockpulse_quality_checks') IS NOT NULL").fetchone()
        assert present == (True, True, True), "preflight did not leave the tables the later tasks use"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


def test_preflight_fails_in_one_line_when_the_topic_is_missing_and_does_not_create_it(worker_env, monkeypatch):
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    broker = worker_env["KAFKA_BOOTSTRAP_SERVERS"]
    monkeypatch.setenv("KAFKA_TOPIC", missing)
    with pytest.raises(ServiceError) as caught:
        tasks.preflight_task()
    assert str(caught.value) == (f"topic {missing!r} does not exist on {broker}: "
                                 "'make services' creates it (or fix KAFKA_TOPIC)")
    assert topic_partitions(broker, missing) == [], "preflight created the topic it found missing"


# -- data quality --------------------------------------------------------------------------------

def test_the_quality_task_fails_on_a_wrong_trade_value_then_moves_on(worker_env):
    url = worker_env["DATABASE_URL"]
    insert_ticks(url, ["30.75", "30.76"])  # 10.25 * 3 = 30.75: the second row is off by a cent
    with pytest.raises(tasks.QualityViolations) as caught:
        tasks.quality_task("run-1", settle=0)
    assert str(caught.value) == "1 data-quality checks failed on 2 rows: trade_value_not_close_times_volume: 1 rows"

    insert_ticks(url, ["30.75"], first_offset=2)
    result = tasks.quality_task("run-2", settle=0)  # only the row landed since run-1, and it is good
    assert result["rows_checked"] == 1 and not any(result["violations"].values())
    with connect(url) as conn:
        runs = conn.execute("SELECT run_id, rows_checked, (violations->>'trade_value_not_close_times_volume')::int "
                            "FROM stockpulse_quality_checks ORDER BY id").fetchall()
    assert runs == [("run-1", 2, 1), ("run-2", 1, 0)]  # the failed check is recorded too


# -- health report -------------------------------------------------------------------------------

SUPERVISED = {"mode": "supervise", "action": "none", "restarted_at": None}
CAUGHT_UP = {"mode": "catch_up", "action": "catch_up", "restarted_at": None}


def test_the_health_report_on_an_empty_topic(worker_env):
    report = tasks.health_task(CAUGHT_UP, stall_seconds=180, timeout=0, poll=0)
    assert report == {
        "state": "healthy", "reasons": ["catch-up finished; 0 records arrived since"], "consumer_pid": None,
        "lag": {"postgres": {"0": 0, "1": 0, "2": 0}, "parquet": {"0": 0, "1": 0, "2": 0}}, "total_lag": 0,
        "seconds_since_last_row": None, "rows_since_last_run": 0, "last_run_checked_to": None,
    }


def test_the_health_report_counts_the_records_waiting_without_a_consumer(worker_env):
    send(worker_env["KAFKA_BOOTSTRAP_SERVERS"], worker_env["KAFKA_TOPIC"], {0: 3, 2: 1})
    report = tasks.health_task(CAUGHT_UP, stall_seconds=180, timeout=0, poll=0)
    assert report["lag"] == {"postgres": {"0": 3, "1": 0, "2": 1}, "parquet": {"0": 3, "1": 0, "2": 1}}
    assert report["total_lag"] == 4


def test_the_health_report_counts_rows_landed_since_the_last_quality_check(worker_env):
    url = worker_env["DATABASE_URL"]
    insert_ticks(url, ["30.75", "30.75"])
    checked = tasks.quality_task("run-1", settle=0)
    insert_ticks(url, ["30.75"], first_offset=2)
    report = tasks.health_task(CAUGHT_UP, stall_seconds=180, timeout=0, poll=0)
    assert report["rows_since_last_run"] == 1
    assert report["last_run_checked_to"] == checked["checked_to"]
    assert report["seconds_since_last_row"] is not None and report["seconds_since_last_row"] >= 0


def test_the_health_report_is_red_when_no_consumer_runs_in_supervise_mode(worker_env):
    with pytest.raises(tasks.PipelineUnhealthy) as caught:
        tasks.health_task(SUPERVISED, stall_seconds=180, timeout=0, poll=0)
    message = str(caught.value)
    assert message.startswith("pipeline unhealthy after the supervisor's action 'none': consumer is not running")
    assert message.endswith(f"consumer log: {worker_env['STOCKPULSE_STATE_DIR']}/logs/consumer.log")


# -- supervise (needs the Spark consumer: only the argument check runs here) ----------------------

def test_the_supervise_task_refuses_an_unknown_mode_before_touching_anything(worker_env, tmp_path):
    with pytest.raises(StockPulseError, match=r"mode='restart_all': use one of supervise, catch_up"):
        tasks.supervise_task("restart_all", 180)
    assert not (tmp_path / "state").exists(), "the supervisor took its lock for a mode it refuses"
