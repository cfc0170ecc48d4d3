"""The dashboard's queries against real PostgreSQL, read as the read-only role.

Expected values are computed here from the seeded ticks with Decimal arithmetic, independently of
the pandas transforms under test. A tick is one ``stream_ts`` shared by the indices of a trading
date, so "the latest N ticks" are rows of N distinct ``stream_ts``. The EXPLAIN tests load 200,000
rows and ANALYZE, so the planner would happily scan the table if the statements let it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
import streamlit as st
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from stockpulse.dashboard import data, queries, transforms
from stockpulse.dashboard.settings import MAX_TICKS, sqlalchemy_url
from stockpulse.db import apply_init_sql
from tests.integration.dashboard_seed import (INDICES, bulk_recent_ticks, insert_many, insert_ticks, known_ticks,
                                              latest_window, reader, staggered_ticks)


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


@pytest.fixture
def staggered(database_url):
    ticks = staggered_ticks()
    insert_ticks(database_url, ticks)
    return ticks


def keyed(frame, column):
    return dict(zip(zip(frame["stream_ts"], frame["index"]), frame[column]))


def test_latest_ticks_are_whole_ticks_oldest_first(read, seeded):
    frame = queries.latest_ticks(read, 3)
    expected = latest_window(seeded, 3)
    assert len(expected) == 3 * len(INDICES)  # every index of each of the three ticks
    assert list(zip(frame["stream_ts"], frame["index"])) == [(t.stream_ts, t.index) for t in expected]
    assert frame["close"].tolist() == [float(t.close) for t in expected]
    assert frame["trade_value"].tolist() == [float(t.trade_value) for t in expected]
    assert str(frame["stream_ts"].dt.tz) == str(frame["date"].dt.tz) == "UTC"  # see charts: UTC instants
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == [t.trading_date.isoformat() for t in expected]


def test_index_filter_counts_ticks_of_the_picked_indices(read, staggered):
    frame = queries.latest_ticks(read, 4, ["NYA", "HSI"])
    assert set(frame["index"]) == {"NYA", "HSI"} and frame["stream_ts"].nunique() == 4
    # NYA alone skipped second 3, so its latest four ticks reach back one second further
    nya = queries.latest_ticks(read, 4, ["NYA"])
    expected = latest_window(staggered, 4, ("NYA",))
    assert [s.second for s in nya["stream_ts"]] == [t.stream_ts.second for t in expected] == [1, 2, 4, 5]
    assert queries.recent_indices(read) == sorted(INDICES)


def test_a_tick_is_never_cut_and_ties_come_back_in_one_order(read, database_url):
    """Many rows share each stream_ts; the window holds all of them, in index order, every time."""
    ticks = known_ticks(per_index=6)
    insert_ticks(database_url, list(reversed(ticks)))  # inserted newest first: no help from heap order
    frames = [queries.latest_ticks(read, 2) for _ in range(3)]
    expected = latest_window(ticks, 2)
    for frame in frames:
        assert list(zip(frame["stream_ts"], frame["index"])) == [(t.stream_ts, t.index) for t in expected]


def expected_relative(window):
    """(% change, rebased) per (stream_ts, index), each from that index's own first tick in the window."""
    first = {}
    for t in sorted(window, key=lambda t: t.stream_ts):
        first.setdefault(t.index, t.close)
    pct = {(t.stream_ts, t.index): float((t.close / first[t.index] - 1) * 100) for t in window}
    rebased = {(t.stream_ts, t.index): float(t.close / first[t.index] * 100) for t in window}
    return first, pct, rebased


@pytest.mark.parametrize("n, indices", [(5, INDICES), (4, ("IXIC", "NYA")), (3, ("NYA",))])
def test_pct_change_and_rebased_start_each_index_at_its_own_first_tick(read, staggered, n, indices):
    ticks = queries.latest_ticks(read, n, [] if indices == INDICES else list(indices))
    window = latest_window(staggered, n, indices)
    first, expected_pct, expected_rebased = expected_relative(window)

    assert keyed(transforms.pct_change_from_first(ticks), "pct_change") == pytest.approx(expected_pct)
    assert keyed(transforms.rebased_to_100(ticks), "rebased") == pytest.approx(expected_rebased)
    assert any(v != 0 for v in expected_pct.values())
    if n == 5:  # the case this test is for: IXIC's first tick comes a second after the others'
        starts = {index: min(t.stream_ts for t in window if t.index == index) for index in indices}
        assert len(set(starts.values())) == 2, starts


def test_pct_change_and_rebased_of_whole_ticks(read, seeded):
    ticks = queries.latest_ticks(read, 4)
    _, expected_pct, expected_rebased = expected_relative(latest_window(seeded, 4))
    assert keyed(transforms.pct_change_from_first(ticks), "pct_change") == pytest.approx(expected_pct)
    assert keyed(transforms.rebased_to_100(ticks), "rebased") == pytest.approx(expected_rebased)


def test_volume_share_matches_independent_arithmetic(read, staggered):
    window = latest_window(staggered, 5)
    volume = {i: sum(t.volume for t in window if t.index == i) for i in INDICES}
    value = {i: sum((t.trade_value for t in window if t.index == i), Decimal(0)) for i in INDICES}
    shares = transforms.volume_share(queries.latest_ticks(read, 5)).set_index(["measure", "index"])["share"]
    for index in INDICES:
        assert shares[("volume", index)] == pytest.approx(volume[index] / sum(volume.values()))
        assert shares[("trade value", index)] == pytest.approx(float(value[index] / sum(value.values())))


def test_metrics_match_the_seeded_rows(read, seeded, database_url):
    m = queries.metrics(read)
    with psycopg.connect(database_url) as conn:
        last_landed = conn.execute("SELECT max(landed_at) FROM ticks_raw").fetchone()[0]
    assert (m.rows, m.rows_estimated) == (len(seeded), False)
    recent_ticks = {t.stream_ts for t in seeded if t.landed_seconds_ago < 60}
    assert len(recent_ticks) == 3 and len(seeded) > 3 * len(INDICES)
    assert m.ticks_per_second == pytest.approx(len(recent_ticks) / 60)  # ticks (dates), not rows
    assert m.last_landed_at == last_landed
    assert m.latest_stream_ts == max(t.stream_ts for t in seeded)
    assert m.seconds_since_last_tick >= 10


def test_metrics_of_an_empty_table(read):
    m = queries.metrics(read)
    assert (m.rows, m.ticks_per_second, m.last_landed_at, m.latest_stream_ts) == (0, 0.0, None, None)
    assert m.seconds_since_last_tick is None
    assert queries.latest_ticks(read, 500).empty


def test_the_header_and_the_charts_come_from_one_snapshot(read, seeded, database_url, monkeypatch):
    """A batch that lands between the count and the charts' read shows in neither: the page
    never says "0 rows" (or any stale count) beside charts of rows it did not count."""
    late_ts = max(t.stream_ts for t in seeded) + timedelta(seconds=1)
    real_latest_ticks = queries.latest_ticks

    def a_batch_lands_first(conn, limit, indices=()):
        with psycopg.connect(database_url, autocommit=True) as writer:
            writer.execute(
                "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
                "kafka_partition, kafka_offset, kafka_timestamp) "
                "VALUES (%s, current_date, 'HSI', 1, 1, 1, 'late', 0, 0, %s)", (late_ts, late_ts))
        return real_latest_ticks(conn, limit, indices)

    monkeypatch.setattr(queries, "latest_ticks", a_batch_lands_first)
    snapshot = queries.live(read, 500)
    assert snapshot.metrics.rows == len(seeded) == len(snapshot.ticks)
    assert late_ts not in set(snapshot.ticks["stream_ts"]) and snapshot.metrics.latest_stream_ts < late_ts
    read.rollback()
    assert queries.metrics(read).rows == len(seeded) + 1  # the batch did land; the next refresh shows it


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


def reader_settings(conn) -> list[str]:
    row = conn.execute("SELECT rolconfig FROM pg_roles WHERE rolname = 'stockpulse_reader'").fetchone()
    return row[0] or []


def test_init_sql_makes_an_existing_reader_role_read_only(database_url):
    """A role left by an older init.sql (or made by hand) without the read-only default gets it,
    when init.sql runs as a role that may alter roles (on the embedded server the pipeline's role
    may not: there the set-up does it as the superuser)."""
    admin_url = database_url.replace("://stockpulse@", "://stockpulse_admin@")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("ALTER ROLE stockpulse_reader RESET default_transaction_read_only")
        try:
            assert "default_transaction_read_only=on" not in reader_settings(conn)
        finally:
            apply_init_sql(admin_url)  # also puts the cluster-wide role back for other tests
        apply_init_sql(admin_url)  # and again: idempotent
        assert reader_settings(conn).count("default_transaction_read_only=on") == 1
    with psycopg.connect(reader(database_url)) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


def test_the_pages_sessions_are_read_only_whatever_the_role(database_url):
    """Even pointed at the writer's URL, the dashboard's engine opens read-only sessions."""
    st.cache_resource.clear()
    try:
        with data.engine(database_url).connect() as conn:
            assert conn.execute(text("SHOW default_transaction_read_only")).scalar_one() == "on"
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "10s"
            with pytest.raises(sa_exc.DBAPIError) as caught:
                conn.execute(text("CREATE TABLE sneaky (x int)"))
        assert caught.value.orig.sqlstate == "25006"  # read_only_sql_transaction
    finally:
        st.cache_resource.clear()


# -- a table big enough that a careless statement would scan it ---------------------------------
BIG = 200_000


@pytest.fixture
def big(database_url):
    insert_many(database_url, BIG)
    return database_url


def plan(conn, statement, params=None) -> str:
    rows = conn.execute(text(f"EXPLAIN {statement.text}"), params or {}).scalars().all()
    return "\n".join(rows)


def table_reads(conn, statement, params) -> list[dict]:
    """Every plan node that reads ticks_raw, as EXPLAIN ANALYZE ran it."""
    root = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.text}"), params).scalar_one()[0]["Plan"]
    nodes, stack = [], [root]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", []))
        if node.get("Relation Name") == "ticks_raw":
            nodes.append(node)
    return nodes


@pytest.mark.parametrize("limit, indices", [(500, ()), (500, ("HSI", "NYA")), (MAX_TICKS, ())])
def test_latest_ticks_are_an_index_walk_then_an_index_range(read, big, limit, indices):
    statement, params = queries.latest_ticks_statement(limit, indices)
    shown = plan(read, statement, params)
    assert "Seq Scan on ticks_raw" not in shown and "Bitmap Heap Scan" not in shown, shown
    # the latest N distinct stream_ts: the index walked backwards, stopped by the LIMIT ...
    assert "Scan Backward using ticks_raw_stream_ts_idx on ticks_raw" in shown, shown
    # ... and their rows: a range on the same index between the oldest and the newest of them
    assert "Index Scan using ticks_raw_stream_ts_idx on ticks_raw" in shown, shown
    assert "Index Cond: ((stream_ts >= " in shown and "AND (stream_ts <= " in shown, shown

    reads = table_reads(read, statement, params)
    assert {node["Index Name"] for node in reads} == {"ticks_raw_stream_ts_idx"}
    frame = queries.latest_ticks(read, limit, indices)
    assert frame["stream_ts"].nunique() == limit
    with psycopg.connect(big) as conn:  # every row of those ticks, counted independently
        oldest = frame["stream_ts"].min().to_pydatetime()
        where = "stream_ts >= %s" + (" AND index = ANY(%s)" if indices else "")
        in_window = conn.execute(f"SELECT count(*) FROM ticks_raw WHERE {where}",
                                 (oldest, list(indices)) if indices else (oldest,)).fetchone()[0]
    assert len(frame) == in_window
    touched = sum(node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0) for node in reads)
    ticks_rows = limit * 5  # five indices per tick in the big table
    assert touched <= 2 * ticks_rows + 10, f"read {touched} rows for {limit} ticks of {BIG}"


def test_recent_indices_read_only_the_latest_rows(read, big):
    shown = plan(read, queries.RECENT_INDICES, {"scan": queries.INDEX_SCAN_ROWS})
    assert "ticks_raw_stream_ts_idx" in shown and "Seq Scan on ticks_raw" not in shown, shown
    assert queries.recent_indices(read) == sorted(["GDAXI", "HSI", "IXIC", "N225", "NYA"])


def test_ticks_per_second_is_an_index_range_over_landed_at(read, big):
    shown = plan(read, queries.RECENT_RATE, {"window": queries.RATE_WINDOW_SECONDS})
    assert "ticks_raw_landed_at_idx" in shown and "Seq Scan on ticks_raw" not in shown, shown
    for statement in (queries.LATEST_MOMENTS,):
        shown = plan(read, statement)
        assert "Seq Scan on ticks_raw" not in shown, shown
    m = queries.metrics(read)
    assert m.ticks_per_second == bulk_recent_ticks() / 60  # distinct stream_ts, not the rows


def test_row_count_is_bounded_then_estimated(read, big):
    shown = plan(read, queries.BOUNDED_COUNT, {"cap": queries.EXACT_COUNT_CAP})
    assert shown.splitlines()[1].lstrip().startswith("->  Limit"), shown
    m = queries.metrics(read)
    assert m.rows_estimated
    assert abs(m.rows - BIG) <= BIG * 0.05
