"""Arrow tables of stored ticks: the lake's schema in Arrow, and an order-free checksum.

The compaction job proves its output holds exactly its inputs' rows by comparing a row count and
a checksum computed the same way on both sides. Both sides are first brought to one Arrow schema
derived from :data:`stockpulse.schema.STORED_FIELDS`: Spark writes timestamps as INT96
(nanoseconds to pyarrow) and keeps partition columns in directory names, and the compacted files
store microsecond timestamps (what Spark can read back) and ``date`` inside the file.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa

from stockpulse.schema import STORED_FIELDS, Field

_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")


def arrow_type(field: Field) -> pa.DataType:
    """The Arrow type of a contract field (timestamps in UTC microseconds, as Spark reads them)."""
    spark = field.spark_type
    match = _DECIMAL.fullmatch(spark)
    if match:
        return pa.decimal128(int(match[1]), int(match[2]))
    return {"TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(), "STRING": pa.string(),
            "BIGINT": pa.int64(), "INT": pa.int32()}[spark]


STORED_SCHEMA = pa.schema([pa.field(f.name, arrow_type(f), nullable=f.nullable) for f in STORED_FIELDS])
"""Every stored column, in contract order: what a reader of any zone of the lake gets."""


def with_partition_values(table: pa.Table, values: tuple[tuple[str, str], ...]) -> pa.Table:
    """``table`` with the columns its directory names carry (``index=HSI``) added as constants."""
    for key, value in values:
        if key in table.column_names or key not in STORED_SCHEMA.names:
            continue
        table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    return table


def normalise(table: pa.Table) -> pa.Table:
    """The stored columns of ``table`` in contract order and types (extra columns dropped)."""
    missing = [n for n in STORED_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    columns = []
    for target in STORED_SCHEMA:
        column = table.column(target.name)
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
        if pa.types.is_string(column.type) and pa.types.is_date(target.type):
            column = column.cast(pa.date32())
        columns.append(column.cast(target.type))
    return pa.Table.from_arrays(columns, schema=STORED_SCHEMA)


def checksum(table: pa.Table) -> str:
    """An order-free checksum of a normalised table: the sum (mod 2^64) of a 64-bit hash of each
    row. Equal row multisets give equal sums; a lost, added or changed row changes it (up to hash
    collisions)."""
    if table.num_rows == 0:
        return "0" * 16
    frame = table.to_pandas(types_mapper=None, timestamp_as_object=False)
    for name in frame.columns:  # hash values, not Python objects' reprs: Decimal('1.0') vs '1.00000000'
        if frame[name].dtype == object:
            frame[name] = frame[name].map(lambda v: None if v is None else str(v))
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    with np.errstate(over="ignore"):
        total = np.add.reduce(hashes, dtype=np.uint64)
    return f"{int(total):016x}"
