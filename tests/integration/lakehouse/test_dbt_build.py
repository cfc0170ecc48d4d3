"""``dbt build`` of ``analytics/`` on a real DuckDB file, over a compacted zone written here with
pyarrow in the compaction's layout (``index=<INDEX>/year=<YYYY>/part-<hex>.parquet``).

The zone is a slice of the shipped CSV: HSI, IXIC and 000001.SS from 2000-11 to 2001-08 (HSI
reports no volume in 2000, 000001.SS none at all), plus 25 days of NYA from 1966 under the name
``NYA/TEST``: an index the seed does not know (the relationships test warns), whose directory
is escaped the way Spark escapes it (``index=NYA%2FTEST``), alone in a year with no volume (its
shares are NULL). One HSI day is sent twice, the replay with a later Kafka timestamp and another
close, in a second part file: the marts must keep the replay.

One successful build is shared by the module (a build takes 10-20 s).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import shutil
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.lakehouse.dbt_build import CompactedZoneEmpty, DbtBuildError, run_build
from stockpulse.schema import STORED_FIELDS

CSV = PROJECT_ROOT / "data" / "indexProcessed.csv"
INDEXES = ("HSI", "IXIC", "000001.SS")
FIRST, LAST = "2000-11-01", "2001-08-31"
UNKNOWN_INDEX = "NYA/TEST"
REPLAYED = ("HSI", dt.date(2001, 7, 10))
REPLAYED_CLOSE = Decimal("13000.12345678")
PRICE = pa.decimal128(18, 8)
TIMESTAMP = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("stream_ts", TIMESTAMP), ("date", pa.date32()),
    ("open", PRICE), ("high", PRICE), ("low", PRICE), ("close", PRICE), ("adj_close", PRICE),
    ("volume", pa.int64()), ("close_usd", PRICE), ("trade_value", pa.decimal128(38, 8)),
    ("kafka_topic", pa.string()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("kafka_timestamp", TIMESTAMP),
])
KAFKA_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def price(text: str) -> Decimal | None:
    return Decimal(text).quantize(Decimal("1e-8")) if text else None


def shipped_rows() -> list[dict]:
    """The slice described in the module docstring, as ticks with lineage."""
    rows = []
    with CSV.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            known = raw["Index"] in INDEXES and FIRST <= raw["Date"] <= LAST
            unknown = raw["Index"] == "NYA" and "1966-01-01" <= raw["Date"] < "1966-02-08"
            if known or unknown:
                rows.append(tick(UNKNOWN_INDEX if unknown else raw["Index"], dt.date.fromisoformat(raw["Date"]),
                                 price(raw["Close"]), int(float(raw["Volume"])), open_=price(raw["Open"]),
                                 close_usd=price(raw["CloseUSD"]), offset=len(rows)))
    return rows


def tick(index: str, date: dt.date, close: Decimal, volume: int, offset: int, *, open_: Decimal | None = None,
         close_usd: Decimal | None = None, trade_value: Decimal | None = None) -> dict:
    sent = KAFKA_EPOCH + dt.timedelta(seconds=offset)
    return {
        "index": index, "stream_ts": sent, "date": date, "open": open_, "high": None, "low": None,
        "close": close, "adj_close": close, "volume": volume, "close_usd": close_usd,
        "trade_value": close * volume if trade_value is None else trade_value,
        "kafka_topic": "stock_ticks", "kafka_partition": offset % 3, "kafka_offset": offset,
        "kafka_timestamp": sent,
    }


def write_zone(root: Path, rows: list[dict]) -> None:
    """Each (index, year) in its own hive-style directory, one part file per call."""
    assert [f.name for f in STORED_FIELDS if f.name != "index"] == SCHEMA.names  # the contract, in order
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["index"], row["date"].year), []).append(row)
    for (index, year), members in groups.items():
        directory = root / f"index={quote(index, safe='')}" / f"year={year}"
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([{k: v for k, v in m.items() if k != "index"} for m in members], SCHEMA)
        pq.write_table(table, directory / f"part-{uuid.uuid4().hex}.parquet")


def environment(tmp: Path, zone: Path, database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LAKE_PATH")}
    env.update({"LAKE_COMPACTED_PATH": str(zone), "ANALYTICS_DUCKDB": str(database),
                "STOCKPULSE_STATE_DIR": str(tmp / "state")})
    return env


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return shipped_rows()


@pytest.fixture(scope="module")
def built(tmp_path_factory, rows):
    """One good build: (summary, DuckDB file, environment, zone)."""
    tmp = tmp_path_factory.mktemp("dbt")
    zone = tmp / "compacted"
    write_zone(zone, rows)
    original = next(r for r in rows if (r["index"], r["date"]) == REPLAYED)
    write_zone(zone, [tick(*REPLAYED, REPLAYED_CLOSE, original["volume"], offset=len(rows) + 1000,
                           close_usd=original["close_usd"])])
    (zone / "_compaction").mkdir()
    (zone / "_compaction" / "run-1.json").write_text("{}")  # the compaction's log: not data
    env = environment(tmp, zone, tmp / "lake" / "analytics.duckdb")
    summary = run_build(env, record=False)
    return summary, tmp / "lake" / "analytics.duckdb", env, zone


def query(database: Path, sql: str, *params):
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def test_the_build_reports_what_it_did(built, rows):
    summary, database, _, _ = built
    assert summary["models_failed"] == summary["tests_failed"] == summary["skipped"] == 0
    assert summary["models_passed"] == 5 and summary["seeds_passed"] == 1 and summary["tests_passed"] > 20
    assert [w for w in summary["warnings"] if w.startswith("relationships")] == summary["warnings"] != []
    days = len({(r["index"], r["date"]) for r in rows})
    assert summary["rows"] == {"dim_index": 14, "fct_index_daily": days, "fct_volume_share": 7}
    assert not database.with_name(database.name + ".building").exists()


def test_a_replayed_day_counts_once_and_the_replay_wins(built, rows):
    _, database, _, _ = built
    assert query(database, "SELECT count(*) FROM stg_compacted_ticks")[0][0] == len(rows) + 1
    assert query(database, "SELECT count(*) FROM fct_index_daily")[0][0] == len(rows)
    assert query(database, 'SELECT close FROM fct_index_daily WHERE "index" = ? AND date = ?', *REPLAYED) \
        == [(REPLAYED_CLOSE,)]


def test_return_volatility_and_rebase_match_a_hand_computation(built, rows):
    _, database, _, _ = built
    closes = [r["close"] for r in sorted(rows, key=lambda r: r["date"]) if r["index"] == "IXIC"]
    got = query(database, 'SELECT close, daily_return, volatility_20d, rebased_close FROM fct_index_daily '
                          'WHERE "index" = \'IXIC\' ORDER BY date')
    assert [g[0] for g in got] == closes
    assert got[0][1] is None and got[0][3] == pytest.approx(100.0)
    assert got[1][1] == pytest.approx(float(closes[1] / closes[0] - 1))
    assert got[5][3] == pytest.approx(float(closes[5] / closes[0] * 100))
    returns = [float(b / a - 1) for a, b in zip(closes, closes[1:])]
    assert [g[2] for g in got[:20]] == [None] * 20  # 19 returns: not yet a 20-day window
    window = returns[:20]
    mean = sum(window) / 20
    by_hand = math.sqrt(sum((x - mean) ** 2 for x in window) / 19) * math.sqrt(252)
    assert got[20][2] == pytest.approx(by_hand)


def test_usd_value_region_and_an_index_the_seed_lacks(built):
    _, database, _, _ = built
    rows = query(database, 'SELECT "index", region, currency, trade_value_usd = close_usd * volume, '
                           'trade_value = close * volume FROM fct_index_daily')
    assert {(r[0], r[1], r[2]) for r in rows} == {
        ("HSI", "Hong Kong", "HKD"), ("IXIC", "United States", "USD"), ("000001.SS", "China", "CNY"),
        (UNKNOWN_INDEX, None, None)}  # 'index=NYA%2FTEST' read back as the symbol Spark escaped
    assert all(r[3] and r[4] for r in rows)


def test_volume_shares_sum_to_one_per_year_and_are_null_without_volume(built):
    _, database, _, _ = built
    shares = {(r[0], r[1]): r[2:] for r in query(
        database, 'SELECT "index", year, volume, volume_share, trade_value_usd_share FROM fct_volume_share')}
    assert set(shares) == {(i, y) for i in INDEXES for y in (2000, 2001)} | {(UNKNOWN_INDEX, 1966)}
    assert shares[("HSI", 2000)][:2] == (0, 0.0) and shares[("000001.SS", 2001)][:2] == (0, 0.0)
    assert shares[("IXIC", 2000)][1] == pytest.approx(1.0)
    assert 0 < shares[("HSI", 2001)][1] < shares[("IXIC", 2001)][1] < 1
    assert shares[(UNKNOWN_INDEX, 1966)] == (0, None, None)
    for year in (2000, 2001):
        assert sum(v[1] for (i, y), v in shares.items() if y == year) == pytest.approx(1.0)
        assert sum(v[2] for (i, y), v in shares.items() if y == year) == pytest.approx(1.0)


def test_a_failing_data_test_names_itself_and_keeps_the_last_good_build(built, tmp_path):
    summary, good, env, zone = built
    shutil.copytree(zone, tmp_path / "compacted")
    write_zone(tmp_path / "compacted", [tick("IXIC", dt.date(2001, 9, 4), Decimal("1.5"), 10, offset=99_999,
                                              trade_value=Decimal("15.00000001"))])
    database = tmp_path / "analytics.duckdb"
    shutil.copy(good, database)
    with pytest.raises(DbtBuildError, match=r"^dbt build failed: test assert_trade_value_is_close_times_volume "
                                            r"failed \(1 row\) \(\d+ nodes skipped\)$"):
        run_build(environment(tmp_path, tmp_path / "compacted", database), record=False)
    assert query(database, "SELECT count(*) FROM fct_index_daily")[0][0] == summary["rows"]["fct_index_daily"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("analytics")) \
        == ["analytics.duckdb", "analytics.duckdb.lock"]


def test_an_empty_zone_is_one_line_and_builds_nothing(tmp_path):
    (tmp_path / "compacted" / "_compaction").mkdir(parents=True)
    database = tmp_path / "analytics.duckdb"
    with pytest.raises(CompactedZoneEmpty, match="holds no Parquet file yet: run the lake compaction first"):
        run_build(environment(tmp_path, tmp_path / "compacted", database), record=False)
    assert not database.exists()


def test_the_run_is_recorded_in_postgres(database_url, tmp_path, rows):
    from stockpulse.db import connect

    write_zone(tmp_path / "compacted", [r for r in rows if r["index"] == "IXIC"][:30])
    env = environment(tmp_path, tmp_path / "compacted", tmp_path / "analytics.duckdb")
    summary = run_build({**env, "DATABASE_URL": database_url})
    with connect(database_url) as conn:
        runs = conn.execute("SELECT job, status, summary, error, finished_at IS NOT NULL "
                            "FROM stockpulse_job_runs").fetchall()
    assert runs == [("dbt_build", "success", summary, None, True)]
    assert summary["rows"]["fct_index_daily"] == 30
