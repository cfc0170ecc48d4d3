"""Known ticks for the dashboard tests, written straight into ``ticks_raw`` as the pipeline would.

Values are chosen so the expected numbers are easy to compute independently in each test: every
index has its own close path and volume, and ``landed_at`` is set relative to the server's
``now()`` so the "last minute" metrics have a known answer. As the producer does, every index of
a tick (a trading date) shares one ``stream_ts``.
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
                [(t.stream_ts, date(2021, 6, 1), t.index, t.close, t.volume, t.trade_value, n, t.stream_ts,
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
