"""postgres/init.sql and the Spark schema must agree with the one contract in schema.py."""

import re

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.db import INIT_SQL
from stockpulse.schema import (FIELD_BY_NAME, IDENTITY_COLUMNS, STORED_FIELDS, TICK_FIELDS, TRADE_VALUE,
                               ticks_raw_columns)


def ddl_columns(table: str) -> dict[str, tuple[str, bool]]:
    sql = INIT_SQL.read_text()
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", sql, re.S).group(1)
    columns = {}
    for line in body.splitlines():
        line = line.split("--")[0].strip().rstrip(",")
        if not line or line.startswith("CONSTRAINT"):
            continue
        name, sql_type, *rest = line.split(None, 2)
        columns[name] = (sql_type, "NOT NULL" not in (rest[0] if rest else ""))
    return columns


def test_ticks_raw_ddl_matches_contract():
    ddl = ddl_columns("ticks_raw")
    for name, (sql_type, nullable) in ticks_raw_columns().items():
        assert name in ddl, f"init.sql lacks ticks_raw.{name}"
        assert ddl[name] == (sql_type, nullable), f"ticks_raw.{name}: init.sql {ddl[name]} != schema {(sql_type, nullable)}"
    assert set(ddl) - set(ticks_raw_columns()) == {"landed_at"}


def test_identity_key_is_unique_in_both_tables():
    sql = INIT_SQL.read_text()
    key = ", ".join(IDENTITY_COLUMNS)
    assert f"ticks_raw_kafka_record UNIQUE ({key})" in sql
    assert f"ticks_dead_letter_kafka_record UNIQUE ({key})" in sql


def test_required_fields():
    required = {f.name for f in TICK_FIELDS if not f.nullable}
    assert required == {"stream_ts", "date", "index", "close", "volume"}
    # PostgreSQL treats NULLs as distinct in a UNIQUE key: a nullable key column would let a
    # replayed record land twice, so every column of the idempotence key must be required.
    assert [name for name in IDENTITY_COLUMNS if FIELD_BY_NAME[name].nullable] == []


# Each Spark SQL type and the PostgreSQL type that stores the same values exactly.
_SQL_FOR_SPARK = {"TIMESTAMP": "TIMESTAMPTZ", "DATE": "DATE", "STRING": "TEXT", "BIGINT": "BIGINT", "INT": "INTEGER"}
_JSON_FOR_SPARK = {"TIMESTAMP": "string", "DATE": "string", "STRING": "string", "BIGINT": "integer", "INT": "integer"}


def _decimal(spelled: str, keyword: str) -> tuple[int, int] | None:
    match = re.fullmatch(rf"{keyword}\((\d+),(\d+)\)", spelled)
    return (int(match.group(1)), int(match.group(2))) if match else None


@pytest.mark.parametrize("field", STORED_FIELDS, ids=lambda f: f.name)
def test_each_column_has_the_same_type_in_the_lake_postgresql_and_json(field):
    """The lake stores the Spark type, ticks_raw the SQL type, the producer writes the JSON type:
    a price at DECIMAL(18,8) in one and NUMERIC(18,6) in the other would round silently."""
    spark_decimal = _decimal(field.spark_type, "DECIMAL")
    if spark_decimal:
        assert _decimal(field.sql_type, "NUMERIC") == spark_decimal
        assert field.json_type == "number"
    else:
        assert field.sql_type == _SQL_FOR_SPARK[field.spark_type]
        assert field.json_type == _JSON_FOR_SPARK[field.spark_type]


def test_trade_value_has_exactly_the_type_spark_gives_close_times_volume():
    """Spark types DECIMAL(p1,s1) * DECIMAL(p2,s2) as DECIMAL(p1+p2+1, s1+s2), and above precision
    38 it cuts the scale: trade_value = close * volume would then no longer hold exactly."""
    close = _decimal(FIELD_BY_NAME["close"].spark_type, "DECIMAL")
    # The Spark job casts the BIGINT volume to a decimal before multiplying (a BIGINT holds 19 digits).
    transform = (PROJECT_ROOT / "stockpulse" / "stream" / "transform.py").read_text()
    cast = re.search(r'volume = F\.col\("t\.volume"\)\.cast\("(DECIMAL\(\d+,\d+\))"\)', transform)
    assert cast, "transform.py no longer casts volume to a decimal the way this test reads it"
    volume = _decimal(cast.group(1), "DECIMAL")
    assert FIELD_BY_NAME["volume"].spark_type == "BIGINT" and volume == (19, 0)
    product = (close[0] + volume[0] + 1, close[1] + volume[1])
    assert product[0] <= 38, "close * volume overflows Spark's DECIMAL(38): Spark would reduce its scale"
    assert _decimal(TRADE_VALUE.spark_type, "DECIMAL") == product
