"""Record each run of a lakehouse batch job (compaction, dbt) in ``stockpulse_job_runs``.

The dashboard's pipeline panel answers "when did compaction and dbt last run, and did they
work?" from this table. It lives in PostgreSQL, not in a local file, because the jobs may run on
an Airflow worker and the dashboard on another machine: the database is what both reach.

A run is written as 'running' when it starts, so a run that was killed stays visible as one that
never finished instead of vanishing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stockpulse.db import connect

logger = logging.getLogger(__name__)

COMPACTION = "lake_compaction"
DBT_BUILD = "dbt_build"
JOBS = (COMPACTION, DBT_BUILD)


@dataclass(frozen=True)
class JobRun:
    """One row of ``stockpulse_job_runs`` as the dashboard reads it."""

    job: str
    started_at: object
    finished_at: object | None
    status: str
    summary: dict
    error: str | None


def one_line(exc: BaseException) -> str:
    """The error as the table keeps it: the first line, without a traceback."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


@contextmanager
def recorded(database_url: str | None, job: str) -> Iterator[dict]:
    """Record the run of ``job``: yields a dict the job fills with its summary.

    Recording is best effort: a database that is down must not stop a compaction (the lake does
    not depend on PostgreSQL), so failures to record are logged and the job goes on. With no
    ``database_url`` nothing is recorded.
    """
    summary: dict = {}
    run_id = _start(database_url, job) if database_url else None
    try:
        yield summary
    except BaseException as exc:
        _finish(database_url, run_id, "failed", summary, one_line(exc) if isinstance(exc, Exception) else type(exc).__name__)
        raise
    _finish(database_url, run_id, "success", summary, None)


def _start(database_url: str, job: str) -> int | None:
    try:
        with connect(database_url, autocommit=True) as conn:
            row = conn.execute("INSERT INTO stockpulse_job_runs (job, status) VALUES (%s, 'running') RETURNING id",
                               (job,)).fetchone()
            return int(row[0])
    except Exception as exc:  # noqa: BLE001 - recording must not stop the job
        logger.warning("could not record the start of %s in stockpulse_job_runs: %s", job, one_line(exc))
        return None


def _finish(database_url: str | None, run_id: int | None, status: str, summary: dict, error: str | None) -> None:
    if database_url is None or run_id is None:
        return
    try:
        with connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE stockpulse_job_runs SET finished_at = now(), status = %s, summary = %s::jsonb, "
                         "error = %s WHERE id = %s", (status, json.dumps(summary, default=str), error, run_id))
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not record the end of run %s in stockpulse_job_runs: %s", run_id, one_line(exc))


LATEST_SQL = """
SELECT DISTINCT ON (job) job, started_at, finished_at, status, summary, error
FROM stockpulse_job_runs
ORDER BY job, started_at DESC, id DESC
"""
"""The latest run of each job (one index scan per job on ``stockpulse_job_runs_job_idx``)."""


def latest(conn) -> dict[str, JobRun]:
    """The latest run of each job that ever ran, by job name (psycopg connection)."""
    rows = conn.execute(LATEST_SQL).fetchall()
    return {r[0]: JobRun(r[0], r[1], r[2], r[3], r[4] or {}, r[5]) for r in rows}
