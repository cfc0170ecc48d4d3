"""The lake view's DuckDB columns: timestamps are the same instants whatever the session's zone."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from stockpulse.lakehouse.lake_view import _duckdb_column
from stockpulse.schema import FIELD_BY_NAME


def test_spark_int96_and_pyarrow_utc_timestamps_read_as_the_same_instant(tmp_path):
    noon = datetime(2020, 1, 1, 12, tzinfo=timezone.utc)
    table = pa.table({"stream_ts": pa.array([noon], pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, tmp_path / "int96.parquet", use_deprecated_int96_timestamps=True)  # as Spark writes
    pq.write_table(table, tmp_path / "utc.parquet")  # as compaction writes
    column = _duckdb_column(FIELD_BY_NAME["stream_ts"])
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        for name in ("int96.parquet", "utc.parquet"):
            epoch = conn.execute(f"SELECT epoch({column}) FROM read_parquet('{tmp_path / name}')").fetchone()[0]
            assert epoch == noon.timestamp(), name
