"""The tick contract, defined once.

Every consumer of the tick shape derives from :data:`TICK_FIELDS` and :data:`STORED_FIELDS`:
the producer's validation and JSON encoding, Spark's ``StructType`` for ``from_json``, the
``ticks_raw`` DDL (a test compares ``postgres/init.sql`` with :func:`ticks_raw_columns`), and the
dashboard's column list. Prices are fixed-point decimals (scale 8) rather than floats so that
``trade_value = close * volume`` holds exactly in every sink and a SQL check can test equality.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICE_SCALE = 8
"""Decimal places kept for prices; CloseUSD in the Kaggle data carries up to 8."""

PRICE_PRECISION = 18
TRADE_VALUE_PRECISION = 38
PRICE_LIMIT = 10 ** (PRICE_PRECISION - PRICE_SCALE)
"""Prices must stay below this in absolute value: what NUMERIC(18,8) / DECIMAL(18,8) can hold."""
VOLUME_LIMIT = 2 ** 63
"""Volumes must stay below this: PostgreSQL's BIGINT (close * volume then fits NUMERIC(38,8))."""
INDEX_MAX_LENGTH = 64
"""Longest index symbol accepted, in characters."""
INDEX_MAX_BYTES = 128
"""Longest index symbol accepted, in UTF-8 bytes. The symbol becomes a lake directory name,
``index=<value>``, where Hive escaping triples some ASCII characters (``/`` is ``%2F``) and other
characters keep their UTF-8 bytes (up to four: 64 emoji are 256 bytes). With at most 64 characters
and 128 bytes the name stays below 220 bytes, under the file systems' 255-byte limit."""
YEAR_RANGE = (1, 9999)
"""Years a ``date`` or ``stream_ts`` may have (in UTC). PostgreSQL has no year 0 and refuses
negative ISO years, and Spark reads an all-digit date string as a day count (year ~57000): all
of these once stopped the job at the COPY. Four-digit years are what the contract's ISO 8601
strings mean."""
PARSE_PRICE_SPARK = f"DECIMAL(38,{PRICE_SCALE + 2})"
"""What the Spark job parses prices as before checking them: wide enough that a price too large
or too precise for the sinks is seen and refused, instead of silently becoming NULL or rounded.
Spark's parser rounds to this scale first: digits only past the 10th place are rounded, not
refused (a known gap, docs/failure-and-recovery.md)."""
"""close DECIMAL(18,8) x volume DECIMAL(19,0) fits DECIMAL(38,8) without Spark reducing scale."""


@dataclass(frozen=True)
class Field:
    """One column of the contract, with its type in each system that carries it."""

    name: str
    json_type: str  # "string" | "number" | "integer"
    spark_type: str  # Spark SQL DDL type
    sql_type: str  # PostgreSQL type
    nullable: bool
    doc: str


_PRICE_SPARK = f"DECIMAL({PRICE_PRECISION},{PRICE_SCALE})"
_PRICE_SQL = f"NUMERIC({PRICE_PRECISION},{PRICE_SCALE})"


def _price(name: str, nullable: bool, doc: str) -> Field:
    return Field(name, "number", _PRICE_SPARK, _PRICE_SQL, nullable, doc)


TICK_FIELDS: tuple[Field, ...] = (
    Field("stream_ts", "string", "TIMESTAMP", "TIMESTAMPTZ", False,
          "UTC wall-clock time the producer emitted the tick (ISO-8601, ends in Z)"),
    Field("date", "string", "DATE", "DATE", False, "trading date of the historical row (YYYY-MM-DD)"),
    Field("index", "string", "STRING", "TEXT", False, "index symbol, e.g. HSI; also the Kafka key"),
    _price("open", True, "opening level"),
    _price("high", True, "day high"),
    _price("low", True, "day low"),
    _price("close", False, "closing level"),
    _price("adj_close", True, "adjusted close"),
    Field("volume", "integer", "BIGINT", "BIGINT", False, "traded volume (whole units)"),
    _price("close_usd", True, "close converted to USD at a fixed rate"),
)
"""The fields of one JSON message on the ``stock_ticks`` topic, in order."""

TRADE_VALUE = Field(
    "trade_value", "number", f"DECIMAL({TRADE_VALUE_PRECISION},{PRICE_SCALE})",
    f"NUMERIC({TRADE_VALUE_PRECISION},{PRICE_SCALE})", False, "close * volume, added by Spark",
)

LINEAGE_FIELDS: tuple[Field, ...] = (
    Field("kafka_topic", "string", "STRING", "TEXT", False, "topic the message was read from"),
    Field("kafka_partition", "integer", "INT", "INTEGER", False, "Kafka partition"),
    Field("kafka_offset", "integer", "BIGINT", "BIGINT", False, "Kafka offset in that partition"),
    Field("kafka_timestamp", "string", "TIMESTAMP", "TIMESTAMPTZ", False,
          "the record's Kafka timestamp (producer send time)"),
)
"""Where each row sat in Kafka: lineage for the sinks and the key that makes writes idempotent.

The offset alone is not an identity: a topic deleted and created again (or a broker whose log
directory was wiped) begins its offsets at 0 again. The record timestamp tells those lives of a
topic apart.
"""

IDENTITY_COLUMNS: tuple[str, ...] = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
"""The unique key of ``ticks_raw`` and ``ticks_dead_letter``: a replayed record changes nothing."""

STORED_FIELDS: tuple[Field, ...] = TICK_FIELDS + (TRADE_VALUE,) + LINEAGE_FIELDS
"""Columns of ``ticks_raw`` and of the Parquet lake, in order (the lake also partitions by some)."""

DEAD_LETTER_FIELDS: tuple[Field, ...] = LINEAGE_FIELDS + (
    Field("kafka_key", "string", "STRING", "TEXT", True, "the record's key, as text"),
    Field("raw_value", "string", "STRING", "TEXT", True, "the record's value as it arrived, as text"),
    Field("reason", "string", "STRING", "TEXT", False, "why it is not a tick, in one line"),
)
"""Columns of ``ticks_dead_letter`` the sink writes, in order (the table adds ``landed_at``)."""

LANDED_AT = "landed_at"
"""Column both tables add themselves (DEFAULT now()): the commit time of the transaction that
stored the row, one per micro-batch from the driver's writer, one per task from the executors'."""

REASON_COLUMN = "dead_letter_reason"
"""Column the consumer adds while a record is in flight: why it is not a valid tick, or NULL."""

REQUIRED_TICK_FIELDS: tuple[str, ...] = tuple(f.name for f in TICK_FIELDS if not f.nullable)

FIELD_BY_NAME = {f.name: f for f in STORED_FIELDS}


def tick_field_names() -> list[str]:
    """Names of the JSON fields, in contract order."""
    return [f.name for f in TICK_FIELDS]


def ticks_raw_columns() -> dict[str, tuple[str, bool]]:
    """``{column: (sql_type, nullable)}`` that ``ticks_raw`` must have."""
    return {f.name: (f.sql_type, f.nullable) for f in STORED_FIELDS}


def dead_letter_columns() -> dict[str, tuple[str, bool]]:
    """``{column: (sql_type, nullable)}`` that ``ticks_dead_letter`` must have."""
    return {f.name: (f.sql_type, f.nullable) for f in DEAD_LETTER_FIELDS}


_JSON_TYPE_NAMES = {"BIGINT": "long", "INT": "integer"}
"""Spark's JSON names of the DDL types above that differ from them in more than case."""


def spark_type_json(ddl_type: str) -> str:
    """A DDL type of this module (``DECIMAL(18,8)``, ``BIGINT``) as Spark names it in a schema's
    JSON form, which pyspark reads without the JVM."""
    return _JSON_TYPE_NAMES.get(ddl_type, ddl_type.lower())


def spark_tick_schema():
    """The ``StructType`` that ``from_json`` parses a message value with: the contract's types,
    but prices in :data:`PARSE_PRICE_SPARK` so that out-of-range and over-precise values can be
    told from absent ones (the job checks them, then casts to the stored type).

    Built from the schema's JSON form, not from DDL: pyspark hands DDL to the JVM's SQL parser,
    ~0.5 s on a job's start-up path when it is the parser's first use (docs/performance.md).
    Imported lazily so the producer and the dashboard do not need a JVM.
    """
    from pyspark.sql.types import StructType

    return StructType.fromJson({"type": "struct", "fields": [
        {"name": f.name, "nullable": True, "metadata": {},
         "type": spark_type_json(PARSE_PRICE_SPARK if f.sql_type == _PRICE_SQL else f.spark_type)}
        for f in TICK_FIELDS]})


PRICE_FIELDS: tuple[str, ...] = tuple(f.name for f in TICK_FIELDS if f.sql_type == _PRICE_SQL)


@dataclass(frozen=True)
class Bound:
    """A value rule every tick obeys beyond its type: ``field op limit``.

    Defined once and applied three times: the producer refuses a CSV row that breaks it, the Spark
    job sends a message that breaks it to the dead letters, and the quality check audits
    ``ticks_raw`` for rows that break it anyway (written by another producer, say).
    """

    field: str
    op: str  # ">" or ">="
    limit: int
    broken: str  # how a breaking value is described: "is not positive"

    def holds(self, value) -> bool:
        return value > self.limit if self.op == ">" else value >= self.limit

    def violated_sql(self, column: str | None = None) -> str:
        """A SQL condition TRUE for a row that breaks the rule (NULL counts as passing), on
        ``column`` (the field's own name by default); PostgreSQL and Spark SQL read it alike."""
        return f"{column or self.field} {'<=' if self.op == '>' else '<'} {self.limit}"


BOUNDS: tuple[Bound, ...] = (
    Bound("close", ">", 0, "is not positive"),
    Bound("volume", ">=", 0, "is negative"),
)
"""The value rules, checked in this order everywhere (the first broken one is the reason)."""

BOUND_OF = {b.field: b for b in BOUNDS}
