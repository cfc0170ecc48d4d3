"""Known ticks for the dashboard tests, written straight into ``ticks_raw`` as the pipeline would.

Values are chosen so the expected numbers are easy to compute independently in each test: every
index has its own close path and volume, and ``landed_at`` is set relative to the server's
``now()`` so the "last minute" metrics have a known answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg

from stockpulse.dashboard.settings import reader_url

INDICES = ("HSI", "IXIC", "NYA")
BULK_RECENT = 30
"""How many of :func:`insert_many`'s rows landed within the last minute."""
START = datetime(2026, 11, 22, 9, 0, 0, tzinfo=timezone.utc)


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


def insert_ticks(url: str, ticks: list[Tick]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
                "kafka_partition, kafka_offset, kafka_timestamp, landed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'seed', 0, %s, %s, now() - make_interval(secs => %s))",
                [(t.stream_ts, date(2021, 6, 1), t.index, t.close, t.volume, t.trade_value, n, t.stream_ts,
                  t.landed_seconds_ago) for n, t in enumerate(ticks)],
            )


def insert_many(url: str, rows: int) -> None:
    """``rows`` synthetic ticks in one statement, then ANALYZE, so the planner sees a table it would
    rather not scan. ``stream_ts`` is one second apart; :data:`BULK_RECENT` rows landed just now and
    the rest more than ten minutes ago, so ticks per second has a known answer."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
            "kafka_partition, kafka_offset, kafka_timestamp, landed_at) "
            "SELECT now() - make_interval(secs => g), DATE '2021-06-01', (ARRAY['HSI','IXIC','NYA','N225','GDAXI'])[g %% 5 + 1], "
            "100 + g %% 97, 1000, (100 + g %% 97) * 1000, 'bulk', 0, g, now(), "
            "now() - make_interval(secs => CASE WHEN g <= %s THEN 0 ELSE 600 + g END) "
            "FROM generate_series(1, %s) AS g",
            (BULK_RECENT, rows),
        )
        conn.execute("ANALYZE ticks_raw")


def reader(url: str) -> str:
    """The test database's URL as the dashboard's read-only role."""
    return reader_url(url)
