"""The pipeline panel's tables, from plain values: batch-job runs and dead letters as a reader sees them.

Pure functions, so what the panel says is tested without PostgreSQL or a browser. Times are UTC,
ages are counted on the database's clock (``now()`` of the same statement), never the viewer's.

Streamlit renders the cells of ``st.table`` (and every caption) as Markdown, and a dead letter is
whatever a hostile producer sent, so free text goes through :func:`~stockpulse.dashboard.formatting.literal` first: a ``[link](...)``,
``**bold**``, ``$x$`` or ``:red[...]`` in a message is shown as typed, never rendered.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pandas as pd

from stockpulse import job_runs
from stockpulse.dashboard import formatting
from stockpulse.dashboard.formatting import literal
from stockpulse.dashboard.queries import JobRun

JOBS = {job_runs.COMPACTION: "lake compaction", job_runs.DBT_BUILD: "dbt build"}
"""The batch jobs the panel reports, by the name ``stockpulse.job_runs`` records, and their label."""

STATUS = {"success": ":green[success]", "failed": ":red[failed]", "running": ":orange[running]"}
"""Coloured with Streamlit's Markdown directives (cells are Markdown): no emoji font needed."""

JOB_COLUMNS = ("job", "status", "started (UTC)", "took", "summary", "error")
DEAD_LETTER_SHOWN = ("landed (UTC)", "topic", "partition", "offset", "reason", "raw value (start)")
RAW_VALUE_SHOWN = 120
SUMMARY_SHOWN = 160

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _utc(moment: datetime | None) -> str:
    return "–" if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def summary_text(summary: dict) -> str:
    """A run's summary on one line: ``files: 12, rows: 50,568``; whole numbers get thousands separators."""
    parts = []
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        parts.append(f"{key}: {shown}")
    return shorten(", ".join(parts), SUMMARY_SHOWN)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, control characters escaped (a dead letter may hold anything), cut at ``limit``."""
    escaped = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def job_rows(runs: dict[str, JobRun], now: datetime) -> pd.DataFrame:
    """One row per batch job, its latest run: status, start, how long it took (or has been
    running: a run killed mid-way stays 'running' for ever, and its growing age says so), what it
    did and, when it failed, why."""
    rows = []
    for job, label in JOBS.items():
        run = runs.get(job)
        if run is None:
            rows.append((label, "never ran", "–", "–", "", ""))
            continue
        end = run.finished_at if run.finished_at is not None else now
        took = formatting.age(max(0.0, (end - run.started_at).total_seconds()))
        if run.finished_at is None:
            took = f"{took} so far"
        status = STATUS.get(run.status, run.status)
        started = f"{_utc(run.started_at)} ({formatting.age((now - run.started_at).total_seconds())} ago)"
        rows.append((label, status, started, took, literal(summary_text(run.summary)),
                     literal(shorten(run.error or "", 300))))
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


def dead_letter_rows(latest: pd.DataFrame) -> pd.DataFrame:
    """The latest dead letters as the panel lists them: raw values cut short and escaped."""
    shown = pd.DataFrame({
        "landed (UTC)": [_utc(t) for t in latest["landed_at"]],
        "topic": [literal(str(t)) for t in latest["kafka_topic"]],
        "partition": latest["kafka_partition"].astype(int),
        "offset": latest["kafka_offset"].astype(int),
        "reason": [literal(shorten(str(r), 200)) for r in latest["reason"]],
        "raw value (start)": ["(none)" if v is None else literal(shorten(str(v), RAW_VALUE_SHOWN))
                              for v in latest["raw_value"]],
    })
    return shown[list(DEAD_LETTER_SHOWN)]


def freshness(seconds: float | None, note: str | None = None) -> str:
    """A sink's freshness metric: ``12 s`` since its last landing or commit, else the short reason."""
    if seconds is not None:
        return formatting.age(seconds)
    return "not shown" if note and note.startswith("not shown") else "–"
