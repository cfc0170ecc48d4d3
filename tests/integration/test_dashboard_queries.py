"""The dashboard's queries against real PostgreSQL, read as the read-only role.

Expected values are computed here from the seeded ticks with Decimal arithmetic, independently of
the pandas transforms under test. The EXPLAIN tests load 200,000 rows and ANALYZE, so the planner
would happily scan the table if the statements let it.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import create_engine, text

from stockpulse.dashboard import queries
from stockpulse.dashboard.settings import sqlalchemy_url
from stockpulse.db import apply_init_sql
from tests.integration.dashboard_seed import BULK_RECENT, INDICES, insert_many, insert_ticks, known_ticks, reader


@pytest.fixture
def read(database_url):
    """A SQLAlchemy connection as stockpulse_reader, like the page's."""
    engine = create_engine(sqlalchemy_url(reader(database_url)))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def seeded(database_url):
    ticks = known_ticks(per_index=8, recent=3)
    insert_ticks(database_url, ticks)
    return ticks


def latest(ticks, n, indices=INDICES):
    chosen = [t for t in ticks if t.index in indices]
    return sorted(chosen, key=lambda t: (t.stream_ts, t.index))[-n:]


def test_latest_ticks_are_the_newest_n_oldest_first(read, seeded):
    frame = queries.latest_ticks(read, 7)
    expected = latest(seeded, 7)
    assert list(zip(frame["stream_ts"], frame["index"])) == [(t.stream_ts, t.index) for t in expected]
    assert frame["close"].tolist() == [float(t.close) for t in expected]
    assert frame["trade_value"].tolist() == [float(t.trade_value) for t in expected]


def test_index_filter(read, seeded):
    frame = queries.latest_ticks(read, 4, ["NYA", "HSI"])
    assert set(frame["index"]) == {"NYA", "HSI"} and len(frame) == 4
    assert queries.recent_indices(read) == sorted(INDICES)


def test_pct_change_and_rebased_match_independent_arithmetic(read, seeded):
    n = 12  # the latest 4 seconds of 3 indices: the window starts after the seeded start
    ticks = queries.latest_ticks(read, n)
    window = latest(seeded, n)
    first = {}
    for t in window:
        first.setdefault(t.index, t.close)
    expected_pct = {(t.stream_ts, t.index): float((t.close / first[t.index] - 1) * 100) for t in window}
    expected_rebased = {(t.stream_ts, t.index): float(t.close / first[t.index] * 100) for t in window}

    pct = queries.pct_change_from_first(ticks)
    rebased = queries.rebased_to_100(ticks)
    assert dict(zip(zip(pct["stream_ts"], pct["index"]), pct["pct_change"])) == pytest.approx(expected_pct)
    assert dict(zip(zip(rebased["stream_ts"], rebased["index"]), rebased["rebased"])) == pytest.approx(expected_rebased)
    assert any(v != 0 for v in expected_pct.values())


def test_volume_share_matches_independent_arithmetic(read, seeded):
    window = latest(seeded, 9)
    volume = {i: sum(t.volume for t in window if t.index == i) for i in INDICES}
    value = {i: sum((t.trade_value for t in window if t.index == i), Decimal(0)) for i in INDICES}
    shares = queries.volume_share(queries.latest_ticks(read, 9)).set_index(["measure", "index"])["share"]
    for index in INDICES:
        assert shares[("volume", index)] == pytest.approx(volume[index] / sum(volume.values()))
        assert shares[("trade value", index)] == pytest.approx(float(value[index] / sum(value.values())))


def test_metrics_match_the_seeded_rows(read, seeded, database_url):
    m = queries.metrics(read)
    with psycopg.connect(database_url) as conn:
        last_landed = conn.execute("SELECT max(landed_at) FROM ticks_raw").fetchone()[0]
    assert (m.rows, m.rows_estimated) == (len(seeded), False)
    assert m.ticks_per_second == pytest.approx(sum(t.landed_seconds_ago < 60 for t in seeded) / 60)
    assert m.last_landed_at == last_landed
    assert m.latest_stream_ts == max(t.stream_ts for t in seeded)
    assert m.seconds_since_last_tick >= 10


def test_metrics_of_an_empty_table(read):
    m = queries.metrics(read)
    assert (m.rows, m.ticks_per_second, m.last_landed_at, m.latest_stream_ts) == (0, 0.0, None, None)
    assert m.seconds_since_last_tick is None
    assert queries.latest_ticks(read, 500).empty


@pytest.mark.parametrize("statement", [
    "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, kafka_partition, "
    "kafka_offset, kafka_timestamp) VALUES (now(), current_date, 'X', 1, 1, 1, 't', 0, 0, now())",
    "DELETE FROM ticks_raw",
    "UPDATE ticks_raw SET close = 0",
    "TRUNCATE ticks_raw",
    "CREATE TABLE sneaky (x int)",
])
def test_the_reader_role_cannot_change_anything(database_url, seeded, statement):
    with psycopg.connect(reader(database_url), autocommit=True) as conn:
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
            conn.execute(statement)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == len(seeded)


def test_the_reader_section_of_init_sql_is_idempotent_and_covers_new_tables(database_url):
    apply_init_sql(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE later_table (x int)")
        attributes = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'stockpulse_reader'"
        ).fetchone()
    assert attributes == (True, False, False, False)
    with psycopg.connect(reader(database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM later_table").fetchone()[0] == 0


# -- a table big enough that a careless statement would scan it ---------------------------------
BIG = 200_000


@pytest.fixture
def big(database_url):
    insert_many(database_url, BIG)
    return database_url


def plan(conn, statement, params=None) -> str:
    rows = conn.execute(text(f"EXPLAIN {statement.text}"), params or {}).scalars().all()
    return "\n".join(rows)


@pytest.mark.parametrize("indices", [(), ("HSI", "NYA")])
def test_latest_ticks_walk_the_stream_ts_index(read, big, indices):
    statement, params = queries.latest_ticks_statement(500, indices)
    shown = plan(read, statement, params)
    assert "Index Scan Backward using ticks_raw_stream_ts_idx on ticks_raw" in shown, shown
    assert "Seq Scan on ticks_raw" not in shown, shown
    assert len(queries.latest_ticks(read, 500, indices)) == 500


def test_recent_indices_read_only_the_latest_ticks(read, big):
    shown = plan(read, queries.RECENT_INDICES, {"scan": queries.INDEX_SCAN_TICKS})
    assert "ticks_raw_stream_ts_idx" in shown and "Seq Scan on ticks_raw" not in shown, shown
    assert queries.recent_indices(read) == sorted(["GDAXI", "HSI", "IXIC", "N225", "NYA"])


def test_ticks_per_second_is_an_index_range_over_landed_at(read, big):
    shown = plan(read, queries.RECENT_RATE, {"window": queries.RATE_WINDOW_SECONDS})
    assert "ticks_raw_landed_at_idx" in shown and "Seq Scan on ticks_raw" not in shown, shown
    for statement in (queries.LATEST_MOMENTS,):
        shown = plan(read, statement)
        assert "Seq Scan on ticks_raw" not in shown, shown
    m = queries.metrics(read)
    assert m.ticks_per_second == BULK_RECENT / 60


def test_row_count_is_bounded_then_estimated(read, big):
    shown = plan(read, queries.BOUNDED_COUNT, {"cap": queries.EXACT_COUNT_CAP})
    assert shown.splitlines()[1].lstrip().startswith("->  Limit"), shown
    m = queries.metrics(read)
    assert m.rows_estimated
    assert abs(m.rows - BIG) <= BIG * 0.05
