"""
# lake_compaction: merge the lake's small files, then build the dbt marts

Every 15 minutes (and whenever triggered by hand):

1. **compact**: `python -m stockpulse.lakehouse.compaction` in-process. Closed partitions of the
   raw zone (`LAKE_PATH`: the stream has moved to a later year, or nothing was written for
   `COMPACTION_MIN_AGE_SECONDS`) are merged into one file per index and year in the compacted zone
   (`LAKE_COMPACTED_PATH`), each checked by row count and checksum before it is committed; raw
   files are deleted `COMPACTION_DELETE_GRACE_SECONDS` after their commit. Readers stay exact
   throughout (see `docs/lakehouse.md`). A run killed at any point is finished by the next one.
2. **dbt_build**: `dbt build` of the `analytics/` project on DuckDB: staging and marts over the
   compacted zone, with their tests, into `ANALYTICS_DUCKDB` (swapped in only when every test
   passed). Skipped, not red, while nothing has been compacted yet.

Both runs are recorded in PostgreSQL's `stockpulse_job_runs`; the dashboard's pipeline panel
shows the latest of each.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

# airflow/dags/<this file> -> the project root, so `stockpulse` imports (string work only, no I/O).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)


@dag(
    dag_id="lake_compaction",
    doc_md=__doc__,
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=30)},
    tags=["stockpulse", "lakehouse"],
)
def lake_compaction():
    @task
    def compact() -> dict:
        from stockpulse.ops.tasks import compaction_task

        return compaction_task()

    # dbt's own tests failing is a finding about the data: a retry would only repeat it.
    @task(retries=1)
    def dbt_build(compaction: dict) -> dict:
        from stockpulse.ops.tasks import dbt_task

        return dbt_task()

    dbt_build(compact())


lake_compaction()
