"""Known data for the dashboard tests, written straight where the pipeline would write it.

Ticks go into ``ticks_raw``. Values are chosen so the expected numbers are easy to compute
independently in each test: every index has its own close path and volume, and ``landed_at`` is
set relative to the server's ``now()`` so the "last minute" metrics have a known answer. As the
producer does, every index of a tick (a trading date) shares one ``stream_ts``; each second after
:data:`START` replays the next trading date after :data:`FIRST_TRADING_DATE`.

Dead letters and batch-job runs go into their tables, and :func:`write_marts` writes a DuckDB file
with the three dbt marts the analytics view reads (a handful of rows).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

from stockpulse.dashboard.settings import reader_url

INDICES = ("HSI", "IXIC", "NYA")
BULK_RECENT = 30
"""How many of :func:`insert_many`'s rows landed within the last minute."""
START = datetime(2026, 11, 22, 9, 0, 0, tzinfo=timezone.utc)
FIRST_TRADING_DATE = date(2021, 6, 1)


@dataclass(frozen=True)
class Tick:
    stream_ts: datetime
    index: str
    close: Decimal
    volume: int
    landed_seconds_ago: int

    @property
    def trade_value(self) -> Decimal:
        return self.close * self.volume

    @property
    def trading_date(self) -> date:
        """The date this tick replays: one trading date per second after :data:`START`."""
        return FIRST_TRADING_DATE + timedelta(days=int((self.stream_ts - START).total_seconds()))


def known_ticks(per_index: int = 8, recent: int = 3) -> list[Tick]:
    """``per_index`` ticks per index, one second apart; the last ``recent`` seconds landed 10 s ago,
    the others an hour ago."""
    ticks = []
    for k in range(per_index):
        landed = 10 if k >= per_index - recent else 3600
        for i, index in enumerate(INDICES):
            close = Decimal(100 * (i + 1)) + Decimal(k) * Decimal("1.25") * (1 if i != 1 else -1)
            ticks.append(Tick(START + timedelta(seconds=k), index, close, (i + 1) * 1000 + k, landed))
    return ticks


STAGGERED = {"HSI": range(0, 6), "IXIC": range(2, 6), "NYA": (1, 2, 4, 5)}
"""Seconds after :data:`START` at which each index traded in :func:`staggered_ticks`."""


def staggered_ticks() -> list[Tick]:
    """Ticks whose indices do not all trade every time, as in real history (an index that starts
    later, a holiday): over the latest five ticks HSI and NYA start at second 1, IXIC at second 2."""
    ticks = []
    for i, (index, seconds) in enumerate(STAGGERED.items()):
        for k in seconds:
            close = Decimal(50 * (i + 1)) + Decimal(k) * Decimal("0.75") * (-1) ** i + Decimal(k * k) / 8
            moment = START + timedelta(seconds=k, microseconds=250_001)  # as the producer's: microseconds
            ticks.append(Tick(moment, index, close, 500 * (i + 1) + 7 * k, 3600))
    return sorted(ticks, key=lambda t: (t.stream_ts, t.index))


def latest_window(ticks: list[Tick], n: int, indices: tuple[str, ...] = INDICES) -> list[Tick]:
    """The rows of the latest ``n`` distinct ``stream_ts`` among ``indices``, oldest first: what the
    dashboard's "latest N ticks" must return, worked out here in plain Python."""
    chosen = [t for t in ticks if t.index in indices]
    moments = sorted({t.stream_ts for t in chosen})[-n:]
    return sorted((t for t in chosen if t.stream_ts in moments), key=lambda t: (t.stream_ts, t.index))


def insert_ticks(url: str, ticks: list[Tick]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
                "kafka_partition, kafka_offset, kafka_timestamp, landed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'seed', 0, %s, %s, now() - make_interval(secs => %s))",
                [(t.stream_ts, t.trading_date, t.index, t.close, t.volume, t.trade_value, n, t.stream_ts,
                  t.landed_seconds_ago) for n, t in enumerate(ticks)],
            )


def insert_many(url: str, rows: int) -> None:
    """``rows`` synthetic rows in one statement, then ANALYZE, so the planner sees a table it would
    rather not scan. Five rows (indices) share each ``stream_ts``, ticks one second apart;
    :data:`BULK_RECENT` rows landed just now and the rest more than ten minutes ago, so ticks per
    second has a known answer (:func:`bulk_recent_ticks`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
            "kafka_partition, kafka_offset, kafka_timestamp, landed_at) "
            "SELECT now() - make_interval(secs => g / 5), DATE '2021-06-01', "
            "(ARRAY['HSI','IXIC','NYA','N225','GDAXI'])[g %% 5 + 1], "
            "100 + g %% 97, 1000, (100 + g %% 97) * 1000, 'bulk', 0, g, now(), "
            "now() - make_interval(secs => CASE WHEN g <= %s THEN 0 ELSE 600 + g END) "
            "FROM generate_series(1, %s) AS g",
            (BULK_RECENT, rows),
        )
        conn.execute("ANALYZE ticks_raw")


def bulk_recent_ticks() -> int:
    """Distinct ``stream_ts`` among :func:`insert_many`'s rows that landed within the last minute."""
    return len({g // 5 for g in range(1, BULK_RECENT + 1)})


def reader(url: str) -> str:
    """The test database's URL as the dashboard's read-only role."""
    return reader_url(url)


DEAD_LETTERS = (
    ("not valid JSON: Expecting value", "{oops"),
    ("close must be > 0 (got -1)", '{"index": "HSI", "close": -1}'),
    ("[click me](javascript:alert(1)) **not bold**", "[click me](javascript:alert(1))"),
)
"""Reasons and raw values of :func:`insert_dead_letters`, newest last; the last one is hostile Markdown."""


def insert_dead_letters(url: str, rows=DEAD_LETTERS) -> None:
    """``rows`` as dead letters, landed one second apart (the last is the newest)."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ticks_dead_letter (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, "
                "kafka_key, raw_value, reason, landed_at) "
                "VALUES ('seed', %s, %s, now(), NULL, %s, %s, now() - make_interval(secs => %s))",
                [(n % 3, 100 + n, raw, reason, len(rows) - n) for n, (reason, raw) in enumerate(rows)],
            )


def insert_job_run(url: str, job: str, status: str, started_seconds_ago: int, took_seconds: int | None,
                   summary: dict | None = None, error: str | None = None) -> None:
    """One row of ``stockpulse_job_runs``; ``took_seconds=None`` leaves the run unfinished."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stockpulse_job_runs (job, started_at, finished_at, status, summary, error) "
            "VALUES (%(job)s, now() - make_interval(secs => %(ago)s), "
            "CASE WHEN %(took)s::int IS NULL THEN NULL "
            "ELSE now() - make_interval(secs => %(ago)s) + make_interval(secs => %(took)s::int) END, "
            "%(status)s, %(summary)s::jsonb, %(error)s)",
            {"job": job, "ago": started_seconds_ago, "took": took_seconds, "status": status,
             "summary": json.dumps(summary or {}), "error": error},
        )


MART_INDICES = (
    ("HSI", "Hong Kong", "Hong Kong Stock Exchange", "HKD"),
    ("NYA", "United States", "New York Stock Exchange", "USD"),
    ("GSPTSE", "Canada", "Toronto Stock Exchange", "CAD"),
)
"""``dim_index`` of :func:`write_marts`; GSPTSE has no trading days in the marts (dbt's dim_index
lists every index of ``indexInfo.csv``, traded or not)."""
MART_DAYS = 30
"""Trading days per index in ``fct_index_daily``: 2019-12-20 onwards, so two years (2019, 2020)."""


def write_marts(path: Path, indices=MART_INDICES) -> None:
    """A DuckDB file with the dbt marts the analytics view reads, as dbt would leave it (schema
    main, the column types of ``analytics/models/marts``).

    HSI and NYA trade :data:`MART_DAYS` days each, NYA closing 10 % higher every day and HSI
    flat; their yearly shares of trade value are 25 % and 75 %.
    """
    import duckdb

    conn = duckdb.connect(str(path))
    try:
        conn.execute('CREATE TABLE main.dim_index ("index" VARCHAR, region VARCHAR, exchange VARCHAR, currency VARCHAR)')
        conn.executemany("INSERT INTO main.dim_index VALUES (?, ?, ?, ?)", [list(row) for row in indices])
        conn.execute(
            'CREATE TABLE main.fct_index_daily ("index" VARCHAR, date DATE, close DECIMAL(18,8), daily_return DOUBLE, '
            "volatility_20d DOUBLE, rebased_close DOUBLE, volume BIGINT, trade_value DECIMAL(38,8), "
            "close_usd DECIMAL(18,8), trade_value_usd DECIMAL(38,8), region VARCHAR, currency VARCHAR)"
        )
        rows = []
        for index, growth, fx in (("HSI", 1.0, 0.13), ("NYA", 1.1, 1.0)):
            region, currency = next((r, c) for i, r, _, c in indices if i == index)
            for k in range(MART_DAYS):
                close = 100.0 * growth ** k
                rows.append([index, date(2019, 12, 20) + timedelta(days=k), close,
                             None if k == 0 else growth - 1, None if k < 20 else 0.01 * (1 + (index == "NYA")),
                             100.0 * growth ** k, 1000, close * 1000, close * fx, close * 1000 * fx, region, currency])
        conn.executemany("INSERT INTO main.fct_index_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute(
            'CREATE TABLE main.fct_volume_share ("index" VARCHAR, year INTEGER, volume BIGINT, '
            "trade_value_usd DECIMAL(38,8), volume_share DOUBLE, trade_value_usd_share DOUBLE)"
        )
        conn.executemany("INSERT INTO main.fct_volume_share VALUES (?, ?, ?, ?, ?, ?)", [
            ["HSI", 2019, 12_000, 1.0e6, 0.5, 0.25], ["NYA", 2019, 12_000, 3.0e6, 0.5, 0.75],
            ["HSI", 2020, 18_000, 2.0e6, 0.5, 0.25], ["NYA", 2020, 18_000, 6.0e6, 0.5, 0.75],
        ])
    finally:
        conn.close()
