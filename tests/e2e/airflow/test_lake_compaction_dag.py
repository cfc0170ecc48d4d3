"""``lake_compaction`` end to end: the real pipeline writes the lake, ``airflow dags test`` compacts
it and builds the dbt marts, and every layer holds the same ticks."""

from __future__ import annotations

import json

import duckdb
import pytest

from stockpulse.config import LakehouseSettings
from stockpulse.db import connect
from stockpulse.lakehouse import lake_view
from tests.conftest import run_cli

from .steps import airflow_cli, produce

pytestmark = pytest.mark.slow


def test_the_dag_compacts_the_lake_and_builds_the_marts_from_it(dag_env, tmp_path):
    env = {**dag_env, "LAKE_COMPACTED_PATH": str(tmp_path / "compacted"),
           "ANALYTICS_DUCKDB": str(tmp_path / "analytics.duckdb"),
           "COMPACTION_MIN_AGE_SECONDS": "0", "COMPACTION_DELETE_GRACE_SECONDS": "0"}
    produce(env, 600)
    landed = run_cli(["consumer/consumer.py", "--once"], env)
    assert landed.returncode == 0, landed.stderr[-3000:]
    with connect(env["DATABASE_URL"]) as conn:
        rows, days = conn.execute("SELECT count(*), count(DISTINCT (index, date)) FROM ticks_raw").fetchone()
    assert rows > 0

    result = airflow_cli(["dags", "test", "lake_compaction"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output, output[-5000:]

    settings = LakehouseSettings.from_env(env)
    files = lake_view.plan(settings, env)
    assert files.raw == () and files.compacted, "every partition was closed (min age 0) and compacted"
    assert lake_view.read_arrow(settings, env).num_rows == rows
    with duckdb.connect(env["ANALYTICS_DUCKDB"], read_only=True) as marts:
        daily, indexes = marts.execute('SELECT count(*), count(DISTINCT "index") FROM fct_index_daily').fetchone()
        share = marts.execute("SELECT max(abs(total - 1)) FROM (SELECT year, sum(volume_share) AS total "
                              "FROM fct_volume_share GROUP BY year HAVING sum(volume) > 0)").fetchone()[0]
    assert daily == days and indexes >= 1
    assert share is None or share < 1e-9
    with connect(env["DATABASE_URL"]) as conn:
        runs = dict(conn.execute("SELECT DISTINCT ON (job) job, status FROM stockpulse_job_runs "
                                 "ORDER BY job, started_at DESC").fetchall())
        summary = conn.execute("SELECT summary FROM stockpulse_job_runs WHERE job = 'lake_compaction' "
                               "ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    assert runs == {"lake_compaction": "success", "dbt_build": "success"}
    summary = summary if isinstance(summary, dict) else json.loads(summary)
    assert summary["rows"] == rows and summary["raw_files_deleted"] == summary["files_compacted"] > 0
