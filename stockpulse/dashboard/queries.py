"""Every SQL statement the dashboard runs (the pandas transforms behind its views are in
:mod:`stockpulse.dashboard.transforms`).

A tick is one trading date: the producer sends every index of a date with one ``stream_ts``
(``stockpulse.replay.csv_rows``), so "the latest N ticks" are the rows of the latest N distinct ``stream_ts``
values, every index of a tick or none of it.

The page must stay fast with millions of rows in ``ticks_raw``, so no statement here reads the whole
table:

- the latest N ticks: ``SELECT DISTINCT stream_ts ... ORDER BY stream_ts DESC LIMIT N`` walks
  ``ticks_raw_stream_ts_idx`` backwards and stops after N distinct values; their oldest and newest
  bound a range scan of the same index, which reads only the rows of those ticks;
- the row count is exact up to :data:`EXACT_COUNT_CAP` rows (a count over a ``LIMIT``), and above that
  the planner's estimate (``pg_class.reltuples`` per page, scaled to the table's current size, the
  same arithmetic the planner does), so it follows a growing table without an ``ANALYZE``;
- ticks per second counts the distinct ``stream_ts`` among rows that landed in the last minute, a
  range over ``ticks_raw_landed_at_idx``; the last landing and the latest ``stream_ts`` are ``max()``
  over their indexes, which PostgreSQL answers from one index entry.

The pipeline panel reads two small tables besides: ``ticks_dead_letter`` (a bounded count and the
latest rows) and ``stockpulse_job_runs`` (the latest run of each batch job, one index scan per job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from stockpulse import job_runs
from stockpulse.schema import FIELD_BY_NAME, Field

logger = logging.getLogger(__name__)

TABLE = "ticks_raw"
DEAD_LETTER_TABLE = "ticks_dead_letter"
JOB_RUNS_TABLE = "stockpulse_job_runs"

CHART_FIELDS: tuple[Field, ...] = tuple(
    FIELD_BY_NAME[name] for name in ("stream_ts", "date", "index", "close", "volume", "trade_value")
)
"""The columns the views need, taken from the tick contract (a renamed field fails here, at import)."""

EXACT_COUNT_CAP = 100_000
"""Up to this many rows the header shows an exact count; past it, the planner's estimate."""

RATE_WINDOW_SECONDS = 60
"""Ticks per second: distinct ``stream_ts`` among rows that landed in this many seconds, over it."""

INDEX_SCAN_ROWS = 5_000
"""The index picker offers the indices seen in this many latest rows (a bounded read)."""

TICK_ORDER = 'stream_ts, "index", kafka_topic, kafka_partition, kafka_offset, kafka_timestamp'
"""Oldest first, then by index; the Kafka coordinates (unique per row) settle any remaining tie, so
the same rows always come back in the same order."""


_EPOCH_UNITS = {"TIMESTAMPTZ": "us", "DATE": "D"}
"""Times travel as whole microseconds, dates as whole days, since 1970-01-01 UTC (see below)."""


def _select_expr(field: Field) -> str:
    """Column as the page wants it, in the form cheapest to turn into a DataFrame: NUMERIC as float8
    (charts need floats, not Decimals), times and dates as integers since the epoch (pandas converts
    those in bulk, while time-zone-aware ``datetime`` objects go one by one, several times slower)."""
    column = f'"{field.name}"'
    if field.sql_type.startswith("NUMERIC"):
        return f"{column}::double precision AS {column}"
    if field.sql_type == "TIMESTAMPTZ":
        return f"(extract(epoch FROM {column}) * 1000000)::bigint AS {column}"
    if field.sql_type == "DATE":
        return f"({column} - DATE '1970-01-01') AS {column}"
    return column


_COLUMNS = ", ".join(_select_expr(f) for f in CHART_FIELDS)


def latest_ticks_statement(limit: int, indices: Sequence[str] = ()) -> tuple[TextClause, dict]:
    """The "latest N ticks" query and its parameters (the EXPLAIN test runs exactly this).

    ``latest`` finds the newest ``limit`` distinct ``stream_ts`` of the picked indices; the outer
    scan reads the range between its oldest and newest. The upper bound changes no result (one
    statement sees one snapshot) but tells the planner the range is narrow: with two bounds it
    cannot know, it expects a sliver of the table rather than a third, and keeps to the index.
    """
    picked = '"index" = ANY(:indices)' if indices else "TRUE"
    statement = text(
        f"WITH latest AS MATERIALIZED (SELECT DISTINCT stream_ts FROM {TABLE} WHERE {picked} "
        f"ORDER BY stream_ts DESC LIMIT :limit) "
        f"SELECT {_COLUMNS} FROM {TABLE} "
        f"WHERE stream_ts BETWEEN (SELECT min(stream_ts) FROM latest) AND (SELECT max(stream_ts) FROM latest) "
        f"AND {picked} ORDER BY {TICK_ORDER}"
    )
    params: dict = {"limit": int(limit)}
    if indices:
        params["indices"] = list(indices)
    return statement, params


def latest_ticks(conn: Connection, limit: int, indices: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of the latest ``limit`` ticks of ``indices`` (all when empty), oldest first."""
    statement, params = latest_ticks_statement(limit, indices)
    frame = pd.DataFrame(conn.execute(statement, params).all(), columns=[f.name for f in CHART_FIELDS])
    for field in CHART_FIELDS:
        if field.sql_type in _EPOCH_UNITS:  # UTC instants, a date as UTC midnight: see ``charts``
            frame[field.name] = pd.to_datetime(frame[field.name], unit=_EPOCH_UNITS[field.sql_type], utc=True)
        elif field.json_type in ("number", "integer"):
            frame[field.name] = pd.to_numeric(frame[field.name]).astype("float64")
    return frame


RECENT_INDICES = text(
    f'SELECT DISTINCT "index" FROM (SELECT "index" FROM {TABLE} ORDER BY stream_ts DESC LIMIT :scan) AS recent '
    'ORDER BY "index"'
)


def recent_indices(conn: Connection, scan: int = INDEX_SCAN_ROWS) -> list[str]:
    """Indices seen in the latest ``scan`` rows: a DISTINCT over the whole table would scan it."""
    return [row[0] for row in conn.execute(RECENT_INDICES, {"scan": scan})]


BOUNDED_COUNT = text(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} LIMIT :cap) AS bounded")

def _estimated_count(table: str) -> TextClause:
    """The planner's row estimate of ``table``, scaled to its current size (see the module docstring)."""
    return text(
        "SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0 "
        "THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int) "
        "ELSE coalesce(s.n_live_tup, 0) END "
        "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        f"WHERE c.oid = '{table}'::regclass"
    )


ESTIMATED_COUNT = _estimated_count(TABLE)

RECENT_RATE = text(
    f"SELECT count(DISTINCT stream_ts) FROM {TABLE} WHERE landed_at > now() - make_interval(secs => :window)"
)

LATEST_MOMENTS = text(
    f"SELECT (SELECT max(landed_at) FROM {TABLE}), (SELECT max(stream_ts) FROM {TABLE}), now()"
)


@dataclass(frozen=True)
class Metrics:
    """The header row: what a user checks first to see that the pipeline is alive."""

    rows: int
    rows_estimated: bool
    ticks_per_second: float
    last_landed_at: datetime | None
    latest_stream_ts: datetime | None
    db_now: datetime

    @property
    def seconds_since_last_tick(self) -> float | None:
        if self.last_landed_at is None:
            return None
        return max(0.0, (self.db_now - self.last_landed_at).total_seconds())


def row_count(bounded: int, cap: int, estimate: float) -> tuple[int, bool]:
    """(rows, estimated): exact below the cap; at the cap, the estimate but never less than the cap."""
    if bounded < cap:
        return bounded, False
    return max(cap, int(round(estimate))), True


def metrics(conn: Connection) -> Metrics:
    """The header metrics, each from a bounded or index-backed statement (see the module docstring)."""
    bounded = conn.execute(BOUNDED_COUNT, {"cap": EXACT_COUNT_CAP}).scalar_one()
    estimate = conn.execute(ESTIMATED_COUNT).scalar_one() if bounded >= EXACT_COUNT_CAP else 0.0
    rows, estimated = row_count(bounded, EXACT_COUNT_CAP, float(estimate))
    recent = conn.execute(RECENT_RATE, {"window": RATE_WINDOW_SECONDS}).scalar_one()
    last_landed, latest_stream, now = conn.execute(LATEST_MOMENTS).one()
    return Metrics(rows, estimated, recent / RATE_WINDOW_SECONDS, last_landed, latest_stream, now)


@dataclass(frozen=True, eq=False)  # a DataFrame has no plain equality
class Live:
    """The live tab's header and charts, read from one snapshot."""

    metrics: Metrics
    ticks: pd.DataFrame


def live(conn: Connection, limit: int, indices: Sequence[str] = ()) -> Live:
    """The header metrics and the latest ``limit`` ticks in one REPEATABLE READ transaction, so
    the two cannot disagree: read apart, a count taken just before the first batch landed said
    "0 rows" beside charts of that batch. Must be the connection's first statement (the isolation
    level is set before its transaction begins)."""
    conn.execution_options(isolation_level="REPEATABLE READ")
    return Live(metrics(conn), latest_ticks(conn, limit, indices))


DEAD_LETTER_COUNT = text(f"SELECT count(*) FROM (SELECT 1 FROM {DEAD_LETTER_TABLE} LIMIT :cap) AS bounded")
ESTIMATED_DEAD_LETTERS = _estimated_count(DEAD_LETTER_TABLE)

LATEST_DEAD_LETTERS_SHOWN = 10
RAW_VALUE_CHARS = 200
"""The panel shows the start of a dead letter's raw value; the table keeps it whole."""

LATEST_DEAD_LETTERS = text(
    "SELECT landed_at, kafka_topic, kafka_partition, kafka_offset, reason, left(raw_value, :chars) "
    f"FROM {DEAD_LETTER_TABLE} ORDER BY landed_at DESC, kafka_topic, kafka_partition, kafka_offset DESC LIMIT :limit"
)
DEAD_LETTER_COLUMNS = ("landed_at", "kafka_topic", "kafka_partition", "kafka_offset", "reason", "raw_value")

LATEST_JOB_RUNS = text(job_runs.LATEST_SQL)
"""The latest run of each batch job (the statement lives with the recorder, in the floor)."""


@dataclass(frozen=True)
class JobRun:
    """One batch job's latest run (compaction, dbt), as ``stockpulse_job_runs`` records it."""

    job: str
    started_at: datetime
    finished_at: datetime | None
    status: str  # 'running' | 'success' | 'failed'
    summary: dict
    error: str | None


@dataclass(frozen=True)
class PipelineFacts:
    """What the pipeline panel reads from PostgreSQL, in one connection."""

    dead_letters: int
    dead_letters_estimated: bool
    latest_dead_letters: pd.DataFrame  # DEAD_LETTER_COLUMNS, newest first
    job_runs: dict[str, JobRun]
    last_landed_at: datetime | None
    db_now: datetime

    @property
    def seconds_since_last_row(self) -> float | None:
        """How fresh the PostgreSQL sink is: seconds since the newest row of ticks_raw landed."""
        if self.last_landed_at is None:
            return None
        return max(0.0, (self.db_now - self.last_landed_at).total_seconds())


def pipeline_facts(conn: Connection) -> PipelineFacts:
    """Dead letters, the latest batch-job runs and the PostgreSQL sink's last landing."""
    bounded = conn.execute(DEAD_LETTER_COUNT, {"cap": EXACT_COUNT_CAP}).scalar_one()
    estimate = conn.execute(ESTIMATED_DEAD_LETTERS).scalar_one() if bounded >= EXACT_COUNT_CAP else 0.0
    count, estimated = row_count(bounded, EXACT_COUNT_CAP, float(estimate))
    latest = pd.DataFrame(
        conn.execute(LATEST_DEAD_LETTERS, {"chars": RAW_VALUE_CHARS, "limit": LATEST_DEAD_LETTERS_SHOWN}).all(),
        columns=list(DEAD_LETTER_COLUMNS),
    )
    runs = {row[0]: JobRun(row[0], row[1], row[2], row[3], row[4] or {}, row[5])
            for row in conn.execute(LATEST_JOB_RUNS)}
    last_landed, _, now = conn.execute(LATEST_MOMENTS).one()
    return PipelineFacts(count, estimated, latest, runs, last_landed, now)
