"""postgres/init.sql and the Spark schema must agree with the one contract in schema.py."""

import re

from stockpulse.db import INIT_SQL
from stockpulse.schema import IDENTITY_COLUMNS, STORED_FIELDS, TICK_FIELDS, ticks_raw_columns


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
    assert [f.name for f in STORED_FIELDS][:len(TICK_FIELDS)] == [f.name for f in TICK_FIELDS]
