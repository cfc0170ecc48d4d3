"""The pipeline panel (``?view=Pipeline``) against real PostgreSQL, a real broker and checkpoint
files laid out as Spark writes them.

The panel's facts come from four places that fail independently: PostgreSQL (dead letters, batch
jobs, the last landing), the lake's commit log, the checkpoints and the broker (lag).
"""

from __future__ import annotations

import json
import os
import time

import psycopg
import pytest

from stockpulse.dashboard import queries
from stockpulse import job_runs
from tests.integration.dashboard.page import run_page
from tests.integration.dashboard_seed import (DEAD_LETTERS, insert_dead_letters, insert_job_run, insert_ticks,
                                              known_ticks)

VIEW = "Pipeline"


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table(at, first_column: str):
    """The panel's ``st.table`` whose first column is ``first_column``, as a DataFrame."""
    return next(t.value for t in at.table if t.value.columns[0] == first_column)


def unescaped(text: str) -> str:
    """What a cell shows: the page escapes Markdown with backslashes."""
    return text.replace("\\", "")


def commit_log(lake, seconds_ago: float) -> None:
    log = lake / "_spark_metadata"
    log.mkdir(parents=True)
    (log / "0").write_text("v1\n")
    moment = time.time() - seconds_ago
    os.utime(log / "0", (moment, moment))


def test_dead_letters_jobs_and_freshness_with_the_broker_out_of_reach(page_env, database_url, tmp_path):
    page_env.setenv("DATABASE_URL", database_url)
    insert_ticks(database_url, known_ticks())  # the newest landed 10 s ago
    insert_dead_letters(database_url)
    insert_job_run(database_url, "lake_compaction", "success", 600, 42, {"partitions": 12, "rows": 50_568})
    insert_job_run(database_url, "dbt_build", "failed", 300, 5, error="Compilation Error in model fct_index_daily")
    commit_log(tmp_path / "lake", seconds_ago=30)
    (tmp_path / "chk").mkdir()

    started = time.monotonic()
    at = run_page(VIEW)
    elapsed = time.monotonic() - started

    shown = metrics(at)
    assert shown["Dead letters"] == "3"
    value, unit = shown["PostgreSQL: since last row landed"].split()
    assert unit == "s" and 10 <= int(value) <= 10 + elapsed + 1
    value, unit = shown["Lake: since last committed batch"].split()
    assert unit == "s" and 30 <= int(value) <= 30 + elapsed + 1
    assert shown["Consumer lag (records)"] == "unknown"
    assert len(at.info) == 1 and at.info[0].value.startswith(
        f"Lag unknown: the broker at {os.environ['KAFKA_BOOTSTRAP_SERVERS']} did not answer")
    assert not at.warning and not at.error and "Rows in ticks_raw" not in shown  # only this tab ran

    jobs = table(at, "job").set_index("job")
    assert jobs.loc["lake compaction", "status"] == ":green[success]" and jobs.loc["lake compaction", "took"] == "42 s"
    assert unescaped(jobs.loc["lake compaction", "summary"]) == "rows: 50,568, partitions: 12"  # JSONB key order
    assert jobs.loc["dbt build", "status"] == ":red[failed]"
    assert unescaped(jobs.loc["dbt build", "error"]) == "Compilation Error in model fct_index_daily"

    dead = table(at, "landed (UTC)")
    assert [unescaped(r) for r in dead["reason"]] == [reason for reason, _ in reversed(DEAD_LETTERS)]  # newest first
    assert dead["reason"][0].startswith("\\[click me\\]\\(javascript\\:")  # shown as typed, not a link


def test_lag_per_partition_from_real_checkpoints_and_a_real_broker(page_env, database_url, tmp_path, broker, topic):
    """Partition 0 holds 5 records, 1 holds 2, 2 none. The PostgreSQL query committed up to 3 and 2;
    the Parquet query never committed, so it lags from the start: 5 + 2 = 7 records."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker})
    for partition, count in ((0, 5), (1, 2)):
        for n in range(count):
            producer.produce(topic, value=b"{}", partition=partition)
    assert producer.flush(30) == 0
    offsets = tmp_path / "chk" / "postgres" / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "0").write_text('v1\n{"batchWatermarkMs":0}\n' + json.dumps({topic: {"0": 3, "1": 2, "2": 0}}) + "\n")
    (tmp_path / "chk" / "postgres" / "commits").mkdir()
    (tmp_path / "chk" / "postgres" / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}\n')
    page_env.setenv("DATABASE_URL", database_url)
    page_env.setenv("KAFKA_BOOTSTRAP_SERVERS", broker)
    page_env.setenv("KAFKA_TOPIC", topic)

    at = run_page(VIEW)
    assert metrics(at)["Consumer lag (records)"] == "7"
    assert "parquet 7 · postgres 2" in [c.value for c in at.caption]  # whose lag the metric is
    lag = table(at, "sink")
    assert lag.values.tolist() == [
        ["parquet", 0, "–", 5, 5], ["parquet", 1, "–", 2, 2], ["parquet", 2, "–", 0, 0],
        ["postgres", 0, "3", 5, 2], ["postgres", 1, "2", 2, 0], ["postgres", 2, "0", 0, 0],
    ]
    assert metrics(at)["Lake: since last committed batch"] == "–"
    assert metrics(at)["Dead letters"] == "0"
    assert any("None: every message so far became a tick." in c.value for c in at.caption)
    jobs = table(at, "job")
    assert jobs["status"].tolist() == ["never ran", "never ran"]


def test_without_the_job_runs_table_the_rest_of_the_panel_still_shows(page_env, database_url, tmp_path):
    page_env.setenv("DATABASE_URL", database_url)
    page_env.setenv("LAKE_PATH", "s3a://bucket/lake")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE stockpulse_job_runs")
    at = run_page(VIEW)
    assert len(at.warning) == 1
    assert "table stockpulse_job_runs does not exist" in at.warning[0].value
    assert "postgres/init.sql" in at.warning[0].value
    shown = metrics(at)
    assert shown["Lake: since last committed batch"] == "not shown"
    assert any(c.value == "not shown for object stores (s3a://bucket/lake)" for c in at.caption)
    assert shown["Consumer lag (records)"] == "unknown"
    assert at.info[0].value.startswith("Lag unknown: no checkpoints at")


def test_the_panel_reads_the_same_latest_runs_as_the_recorder(database_url):
    """The page repeats job_runs.LATEST_SQL (the dashboard may not import ops): same answer on real rows."""
    from sqlalchemy import create_engine

    from stockpulse.dashboard.settings import sqlalchemy_url
    from tests.integration.dashboard_seed import reader

    with job_runs.recorded(database_url, job_runs.COMPACTION) as summary:
        summary["rows"] = 10
    with pytest.raises(RuntimeError):
        with job_runs.recorded(database_url, job_runs.DBT_BUILD):
            raise RuntimeError("dbt failed\nwith details")
    with job_runs.recorded(database_url, job_runs.COMPACTION) as summary:
        summary["rows"] = 20

    with psycopg.connect(database_url) as conn:
        expected = job_runs.latest(conn)
    engine = create_engine(sqlalchemy_url(reader(database_url)))
    try:
        with engine.connect() as conn:
            shown = queries.pipeline_facts(conn).job_runs
    finally:
        engine.dispose()
    assert {job: vars(run) for job, run in shown.items()} == {job: vars(run) for job, run in expected.items()}
    assert shown["lake_compaction"].summary == {"rows": 20}
    assert (shown["dbt_build"].status, shown["dbt_build"].error) == ("failed", "dbt failed")
