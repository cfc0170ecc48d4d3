"""Read the whole lake exactly once: compacted files plus the raw files no compaction covers.

After a compaction the raw zone alone is no longer the lake: its compacted files are deleted
(after a grace period) while Spark's sink log still lists them, and the compacted zone alone holds
only closed partitions. This module plans the one file list that holds every row once, from the
two logs (never from directory listings, which can show a file that is being replaced or was
left by a killed write), and reads it with pyarrow, DuckDB or Spark.

Plan, then read promptly: a plan stays valid for ``COMPACTION_DELETE_GRACE_SECONDS`` after a
compaction commits, long enough for any reader here; a reader that holds a plan longer must plan
again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from stockpulse.config import LakehouseSettings, child
from stockpulse.lakehouse import compaction_plan as cp
from stockpulse.lakehouse.storage import duckdb_location
from stockpulse.lakehouse.compaction import committed_raw, entries, open_zone, read_files
from stockpulse.schema import STORED_FIELDS, Field


@dataclass(frozen=True)
class LakeFiles:
    """Relative file lists of one consistent view of the lake."""

    raw: tuple[str, ...]  # raw zone files no compaction covers
    compacted: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (file, its unit)


def plan(settings: LakehouseSettings, env: Mapping[str, str] = os.environ) -> LakeFiles:
    """The files that hold every committed row once. The compaction log is read before the sink's:
    a compaction committed in between only makes the raw list name files that still exist."""
    out = open_zone(settings.compacted_path, env)
    committed, _ = entries(out)
    raw = open_zone(settings.raw_path, env)
    done = cp.covered(committed)
    pending_raw = sorted(committed_raw(raw) - done)
    return LakeFiles(tuple(pending_raw), tuple((e.output, e.unit) for e in committed))


def read_arrow(settings: LakehouseSettings, env: Mapping[str, str] = os.environ) -> pa.Table:
    """The whole lake as one Arrow table in the stored schema (for tests and small lakes)."""
    files = plan(settings, env)
    tables = [read_files(open_zone(settings.raw_path, env), files.raw),
              read_files(open_zone(settings.compacted_path, env), [p for p, _ in files.compacted])]
    return pa.concat_tables(tables)


def duckdb_sql(settings: LakehouseSettings, env: Mapping[str, str] = os.environ) -> str:
    """A DuckDB ``SELECT`` of the whole lake with the stored columns (httpfs loaded for S3)."""
    files = plan(settings, env)
    selects = []
    for location, paths in ((settings.raw_path, files.raw), (settings.compacted_path, [p for p, _ in files.compacted])):
        columns = ", ".join(f'{_duckdb_column(f)} AS "{f.name}"' for f in STORED_FIELDS)
        if paths:
            quoted = ", ".join("'" + child(duckdb_location(location), p).replace("'", "''") + "'" for p in paths)
            selects.append(f"SELECT {columns} FROM read_parquet([{quoted}], hive_partitioning = true, "
                           "hive_types_autocast = false, union_by_name = true)")
    if not selects:
        empty = ", ".join(f'CAST(NULL AS {_duckdb_type(f.spark_type)}) AS "{f.name}"' for f in STORED_FIELDS)
        return f"SELECT {empty} WHERE false"
    return " UNION ALL ".join(selects)


def _duckdb_column(field: Field) -> str:
    """The column in the lake's type. Spark's INT96 timestamps read as naive UTC and pyarrow's
    compacted files as UTC instants: a bare CAST to TIMESTAMPTZ would read the naive ones in the
    session's time zone, so each is converted by what it is."""
    if field.spark_type == "TIMESTAMP":
        name = f'"{field.name}"'
        return (f"CASE WHEN typeof({name}) = 'TIMESTAMP' THEN timezone('UTC', CAST({name} AS TIMESTAMP)) "
                f"ELSE CAST({name} AS TIMESTAMPTZ) END")
    return f'CAST("{field.name}" AS {_duckdb_type(field.spark_type)})'


def _duckdb_type(spark_type: str) -> str:
    return {"STRING": "VARCHAR", "INT": "INTEGER", "TIMESTAMP": "TIMESTAMPTZ"}.get(spark_type, spark_type)


def spark_frame(spark, settings: LakehouseSettings, env: Mapping[str, str] = os.environ):
    """The whole lake as a Spark DataFrame with the stored columns (the same session's Hadoop
    configuration reaches S3)."""
    from pyspark.sql import functions as F

    files = plan(settings, env)
    columns = [F.col(f"`{f.name}`").cast(f.spark_type).alias(f.name) for f in STORED_FIELDS]
    # The contract's types, partition columns included: inferred, an index "0100" would read as 100.
    schema = ", ".join(f"`{f.name}` {f.spark_type}" for f in STORED_FIELDS)
    frames = []
    if files.raw:
        frames.append(spark.read.schema(schema).option("basePath", settings.raw_path)
                      .parquet(*[child(settings.raw_path, p) for p in files.raw]).select(*columns))
    if files.compacted:
        frames.append(spark.read.schema(schema).option("basePath", settings.compacted_path)
                      .parquet(*[child(settings.compacted_path, p) for p, _ in files.compacted]).select(*columns))
    if not frames:
        return spark.createDataFrame([], schema)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
