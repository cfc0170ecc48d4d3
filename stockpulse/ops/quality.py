"""Data-quality checks on the ticks that landed since the last check, and the record of each check.

Every check is a count of violating rows in a ``landed_at`` window, so a run reports numbers, not
a yes/no. Each finished check is recorded in ``stockpulse_quality_checks`` (created here,
idempotently: ``postgres/init.sql`` belongs to the streaming job), whose latest ``checked_to`` is
the next run's starting point and the health report's "rows since the last run".

``landed_at`` is the writing transaction's *start* (``now()``), not its commit, so a batch still
being written carries a timestamp older than rows already visible, however long its COPY takes.
The window therefore ends just before the oldest transaction still in flight on the database
(``pg_stat_activity.xact_start``; a role sees its own sessions there, and the consumer writes as
the same role as the check), and at most ``settle`` seconds before now.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from stockpulse.schema import BOUNDS

logger = logging.getLogger(__name__)

# name -> SQL condition that is TRUE for a violating row (NULL comparisons count as passing).
# NULL keys need no check: ticks_raw declares them NOT NULL. The value rules the producer and the
# Spark job enforce (schema.BOUNDS) are audited too: a row written by another writer may break them.
CHECKS: dict[str, str] = {
    "trade_value_not_close_times_volume": "trade_value IS DISTINCT FROM close * volume",
    "low_above_open": "low > open",
    "low_above_close": "low > close",
    "open_above_high": "open > high",
    "close_above_high": "close > high",
    **{f"{b.field}_{b.broken.replace(' ', '_')}": b.violated_sql() for b in BOUNDS},
}

WINDOW = "(%(since)s::timestamptz IS NULL OR landed_at > %(since)s::timestamptz) AND landed_at <= %(until)s"


# The window's end: ``settle`` seconds ago, but before any transaction still open on this database
# (other than ours), whose rows would commit with an older landed_at than the end we record.
UNTIL_SQL = """
SELECT least(now() - make_interval(secs => %(settle)s),
             (SELECT min(xact_start) - interval '1 microsecond' FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL)),
       (SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start < now() - make_interval(secs => %(settle)s))
"""


def count_sql() -> str:
    """One pass over the window counting rows and each check's violations."""
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in CHECKS.items())
    return f"SELECT count(*) AS rows_checked, {counts} FROM ticks_raw WHERE {WINDOW}"


def sample_sql(limit: int = 10) -> str:
    """A few violating rows with the checks they fail, so the log shows what to look at."""
    reasons = ", ".join(f"CASE WHEN {cond} THEN '{name}' END" for name, cond in CHECKS.items())
    any_violation = " OR ".join(f"({cond})" for cond in CHECKS.values())
    return (f"SELECT index, date, kafka_partition, kafka_offset, concat_ws(',', {reasons}) FROM ticks_raw "
            f"WHERE {WINDOW} AND ({any_violation}) ORDER BY landed_at, kafka_partition, kafka_offset LIMIT {limit}")


def failures(violations: dict[str, int]) -> list[str]:
    """Human-readable lines for the checks that found violations (empty: all passed)."""
    return [f"{name}: {count} rows" for name, count in violations.items() if count]


def last_checked_to(url: str) -> datetime | None:
    """Where the previous check stopped (None: nothing was checked yet)."""
    from stockpulse.db import connect

    with connect(url) as conn:
        return conn.execute("SELECT max(checked_to) FROM stockpulse_quality_checks").fetchone()[0]


def check(url: str, run_id: str | None, settle: float = 30.0) -> dict:
    """Check the rows landed since the last check, record the check, return its summary.

    The check is recorded whether or not it finds violations: a failed run is the report, and the
    next run moves on to new rows instead of failing forever on the same ones.
    """
    from stockpulse.db import connect

    with connect(url) as conn:
        since = conn.execute("SELECT max(checked_to) FROM stockpulse_quality_checks").fetchone()[0]
        until, open_transactions = conn.execute(UNTIL_SQL, {"settle": settle}).fetchone()
        if open_transactions:
            logger.info("quality window ends at %s: %d transaction(s) opened before it are still in flight; "
                        "their rows are checked by a later run", until, open_transactions)
        if since is not None and until <= since:
            until = since
        params = {"since": since, "until": until}
        cursor = conn.execute(count_sql(), params)
        row = dict(zip([c.name for c in cursor.description], cursor.fetchone()))
        rows = row.pop("rows_checked")
        samples = conn.execute(sample_sql(), params).fetchall() if any(row.values()) else []
        conn.execute(
            "INSERT INTO stockpulse_quality_checks (checked_from, checked_to, rows_checked, violations, run_id) "
            "VALUES (%s, %s, %s, %s, %s)", (since, until, rows, json.dumps(row), run_id),
        )
    return {
        "checked_from": since.isoformat() if since else None,
        "checked_to": until.isoformat(),
        "rows_checked": rows,
        "violations": row,
        "samples": [f"{r[0]} {r[1]} partition {r[2]} offset {r[3]}: {r[4]}" for r in samples],
    }
