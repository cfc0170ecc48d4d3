"""The live tables, after postgres/init.sql, have exactly the columns schema.py defines.

tests/unit/test_schema.py reads init.sql as text; this asks PostgreSQL itself, so a column the
DDL spells differently, or one an old database kept, cannot slip through.
"""

from __future__ import annotations

import pytest

from stockpulse.db import connect
from stockpulse.schema import LANDED_AT, dead_letter_columns, ticks_raw_columns

# information_schema's spelling of the types schema.py writes in DDL form
_TYPES = {"TEXT": "text", "DATE": "date", "BIGINT": "bigint", "INTEGER": "integer",
          "TIMESTAMPTZ": "timestamp with time zone"}


def _expected(sql_type: str) -> str:
    return _TYPES.get(sql_type, sql_type.lower().replace("numeric", "numeric"))


def live_columns(url: str, table: str) -> dict[str, tuple[str, bool]]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable "
            "FROM information_schema.columns WHERE table_name = %s AND table_schema = current_schema()",
            (table,)).fetchall()
    columns = {}
    for name, data_type, precision, scale, nullable in rows:
        spelled = f"numeric({precision},{scale})" if data_type == "numeric" else data_type
        columns[name] = (spelled, nullable == "YES")
    return columns


@pytest.mark.parametrize("table, contract", [("ticks_raw", ticks_raw_columns), ("ticks_dead_letter", dead_letter_columns)])
def test_live_table_matches_the_schema(database_url, table, contract):
    live = live_columns(database_url, table)
    expected = {name: (_expected(sql_type), nullable) for name, (sql_type, nullable) in contract().items()}
    assert {name: live.get(name) for name in expected} == expected
    assert set(live) - set(expected) == {LANDED_AT}
