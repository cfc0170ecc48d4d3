"""The compaction plan: units, closure, coverage, names and what may be deleted."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa

from stockpulse.lakehouse import compaction_plan as cp
from stockpulse.lakehouse.tables import STORED_SCHEMA, checksum, normalise, with_partition_values


def raw(path: str, mtime: float = 0.0, size: int = 100) -> cp.RawFile:
    return cp.RawFile(path, size, mtime)


def entry(name: str, inputs: tuple[str, ...], committed_at: float = 0.0) -> cp.Entry:
    return cp.Entry(name, (("index", "HSI"), ("year", "2020")), f"index=HSI/year=2020/{name}.parquet",
                    inputs, 1, "0" * 16, committed_at)


def test_a_date_partition_belongs_to_its_year_and_values_are_unescaped():
    partition = cp.partition_of("index=A%2FB/date=2020-01-02/part-0.parquet")
    assert partition == (("index", "A/B"), ("date", "2020-01-02"))
    assert cp.unit_of(partition) == (("index", "A/B"), ("year", "2020"))
    assert cp.unit_path(cp.unit_of(partition)) == "index=A%2FB/year=2020"
    assert cp.unit_of(cp.partition_of("part-0.parquet")) == ()


def test_a_unit_is_closed_when_a_later_year_exists_or_it_is_quiet():
    files = [raw("index=HSI/date=2020-12-31/part-a.parquet", mtime=100),
             raw("index=HSI/date=2021-01-04/part-b.parquet", mtime=100),
             raw("index=NYA/date=2020-06-01/part-c.parquet", mtime=100),
             raw("index=N225/date=2019-01-01/part-d.parquet", mtime=10)]
    closed = cp.closed_units(files, now=150, min_age=60)
    assert (("index", "HSI"), ("year", "2020")) in closed  # superseded by 2021
    assert (("index", "HSI"), ("year", "2021")) not in closed  # the stream is writing it
    assert (("index", "NYA"), ("year", "2020")) not in closed  # newest for NYA, written 50 s ago
    assert (("index", "N225"), ("year", "2019")) in closed  # quiet for 140 s


def test_the_plan_takes_uncovered_files_of_closed_units_only():
    files = [raw("index=HSI/date=2020-01-02/part-a.parquet"), raw("index=HSI/date=2020-01-03/part-b.parquet"),
             raw("index=HSI/date=2021-01-04/part-c.parquet", mtime=1000)]
    done = [entry("part-old", ("index=HSI/date=2020-01-02/part-a.parquet",))]
    tasks = cp.plan(files, done, now=1001, min_age=60)
    assert [t.inputs for t in tasks] == [("index=HSI/date=2020-01-03/part-b.parquet",)]
    assert tasks[0].output.startswith("index=HSI/year=2020/part-")
    assert cp.plan(files, done, now=1001, min_age=60) == tasks  # same inputs, same name: a rerun rewrites it


def test_output_names_change_with_the_inputs():
    unit = (("index", "HSI"), ("year", "2020"))
    assert cp.output_name(unit, ["a", "b"]) == cp.output_name(unit, ["b", "a"])
    assert cp.output_name(unit, ["a"]) != cp.output_name(unit, ["a", "b"])


def test_chunks_bound_the_input_bytes_of_one_output():
    files = [raw(f"part-{i}", size=40) for i in range(5)]
    assert [len(g) for g in cp.chunks(files, 100)] == [2, 2, 1]
    assert [len(g) for g in cp.chunks([raw("big", size=500)], 100)] == [1]


def test_inputs_are_deleted_only_after_the_grace_and_only_if_present():
    done = [entry("e1", ("a", "b"), committed_at=100), entry("e2", ("c",), committed_at=190)]
    assert cp.deletable(done, present={"a", "c"}, now=200, grace=50) == ["a"]
    assert cp.deletable(done, present={"a", "b", "c"}, now=200, grace=0) == ["a", "b", "c"]


def test_sink_log_paths_become_relative_and_deletes_are_honoured():
    adds = "v1\n" + "\n".join(json.dumps({"path": p, "action": "add"}) for p in (
        "file:/lake/raw/index=HSI/date=2020-01-02/part-a.parquet",
        "file:/lake/raw/index=A%252FB/part-b.parquet",
        "file:/elsewhere/part-c.parquet"))
    deletes = "v1\n" + json.dumps({"path": "file:/lake/raw/index=A%252FB/part-b.parquet", "action": "delete"})
    assert cp.committed_paths([adds], "/lake/raw") == {"index=HSI/date=2020-01-02/part-a.parquet",
                                                       "index=A%2FB/part-b.parquet"}
    assert cp.committed_paths([adds, deletes], "/lake/raw") == {"index=HSI/date=2020-01-02/part-a.parquet"}
    s3 = "v1\n" + json.dumps({"path": "s3a://bucket/lake/index=HSI/part-d.parquet", "action": "add"})
    assert cp.committed_paths([s3], "bucket/lake") == {"index=HSI/part-d.parquet"}


def test_only_the_newest_compact_log_file_and_later_batches_are_read():
    names = ["0", "1", "8", "9.compact", "10", "11", "19.compact", "20", ".21.tmp", "_x"]
    assert cp.log_files_to_read(names) == ["19.compact", "20"]
    assert cp.log_files_to_read(["0", "1"]) == ["0", "1"]


def test_entries_round_trip_through_json():
    e = entry("part-x", ("a", "b"), committed_at=12.5)
    assert cp.Entry.from_json("part-x", e.to_json()) == e


def ticks(n: int, index: str | None = "HSI") -> pa.Table:
    rows = {
        "stream_ts": [datetime(2026, 1, 1, tzinfo=timezone.utc)] * n,
        "date": [date(2020, 1, 2 + i % 20) for i in range(n)],
        "open": [Decimal("1.5")] * n, "high": [Decimal("2")] * n, "low": [Decimal("1")] * n,
        "close": [Decimal(f"1.{i:04d}") for i in range(n)], "adj_close": [None] * n,
        "volume": list(range(n)), "close_usd": [None] * n,
        "trade_value": [Decimal(f"1.{i:04d}") * i for i in range(n)],
        "kafka_topic": ["t"] * n, "kafka_partition": [0] * n, "kafka_offset": list(range(n)),
        "kafka_timestamp": [datetime(2026, 1, 1, tzinfo=timezone.utc)] * n,
    }
    if index is not None:
        rows["index"] = [index] * n
    return pa.table(rows)


def test_the_checksum_ignores_row_order_and_sees_a_changed_row():
    table = normalise(ticks(50))
    assert table.schema == STORED_SCHEMA
    shuffled = table.take(list(reversed(range(50))))
    assert checksum(shuffled) == checksum(table)
    changed = table.set_column(table.schema.get_field_index("volume"), "volume",
                               pa.array([1] + list(range(1, 50)), pa.int64()))
    assert checksum(changed) != checksum(table)
    assert checksum(table.slice(1)) != checksum(table)


def test_partition_values_fill_columns_the_directory_carries():
    table = with_partition_values(ticks(3, index=None).drop_columns(["date"]),
                                  (("index", "HSI"), ("date", "2020-01-02"), ("year", "2020")))
    normal = normalise(table)
    assert normal.column("index").to_pylist() == ["HSI"] * 3
    assert normal.column("date").to_pylist() == [date(2020, 1, 2)] * 3


def test_without_a_date_in_the_layout_files_are_taken_by_age():
    files = [raw("index=HSI/part-a.parquet", mtime=100), raw("index=HSI/part-b.parquet", mtime=990)]
    tasks = cp.plan(files, [], now=1000, min_age=60)
    assert [t.inputs for t in tasks] == [("index=HSI/part-a.parquet",)]
    assert tasks[0].output.startswith("index=HSI/part-")


def test_int96_timestamps_outside_the_nanosecond_range_survive_a_read(tmp_path):
    """Spark writes INT96; read at nanoseconds, year 3000 would wrap to 2084 (and be checksummed so)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from stockpulse.lakehouse.compaction import Zone, read_files

    table = ticks(2).drop_columns(["index", "date"])
    late = datetime(3000, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    table = table.set_column(0, "stream_ts", pa.array([late, late], pa.timestamp("us", tz="UTC")))
    path = tmp_path / "index=HSI" / "date=2020-01-02" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, use_deprecated_int96_timestamps=True)
    read = read_files(Zone(pafs.LocalFileSystem(), str(tmp_path)), ["index=HSI/date=2020-01-02/part-0.parquet"])
    assert read.column("stream_ts").to_pylist() == [late, late]
    assert read.column("index").to_pylist() == ["HSI", "HSI"]
