"""From Kafka records to ticks: parse JSON on the JVM, enrich, and name what is malformed.

Everything here builds Spark column expressions from :mod:`stockpulse.schema`, so the parsing
rules and the contract cannot drift apart. ``from_json`` runs in the JVM (no Python per row).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stockpulse.schema import (
    BOUNDS, INDEX_MAX_BYTES, INDEX_MAX_LENGTH, PRICE_FIELDS, PRICE_LIMIT, PRICE_SCALE, REASON_COLUMN, STORED_FIELDS,
    TICK_FIELDS, TRADE_VALUE, YEAR_RANGE, spark_tick_schema,
)


KEPT = "_kept_"
"""Prefix of the columns holding each price cast to its stored type, between two projections."""


def dead_letter_reason(parsed: str = "t", raw: str = "raw_value", kept: str | None = None) -> Column:
    """The first reason a record is not a valid tick, or NULL when it is one, over the struct
    column ``parsed`` (``from_json``'s output) and the message text ``raw``.

    ``kept`` prefixes the columns holding each price as stored (``try_cast`` to the sinks'
    decimal, as :func:`tick_columns` computes them once); without it the cast is spelled out here.
    Both price checks read that one cast: NULL means the price does not fit the sinks, a value
    unequal to the parsed one means it had more places than they keep. This replaced an ``abs``
    and a ``round`` per price, each a new ``BigDecimal`` per row (docs/performance.md, ninth round).

    Each condition is SQL text: built from ``functions`` calls the whole took ~1,900 py4j round
    trips and ~0.6 s of a job's cold start (docs/performance.md, eighth round); now ~600. The
    texts hold no backslash escape (a NUL is ``char(0)``), so they mean the same whatever a user
    sets for Spark's parser (``spark.sql.parser.escapedStringLiterals``); the reasons are plain
    literals.
    """
    def field(name: str) -> str:
        return f"{parsed}.`{name}`"

    branches: list[tuple[str, str]] = []
    all_missing = "(" + " AND ".join(f"{field(f.name)} IS NULL" for f in TICK_FIELDS) + ")"
    # Spaces and NULs only is empty (the text is no longer cleaned of NULs before this check).
    # Only a message without any tick field can be empty, so the trim runs for those alone:
    # Spark's trim of a right end scans the whole string and allocates two arrays of its length,
    # ~4% of the task samples when every message was trimmed (docs/performance.md).
    branches.append((f"{raw} IS NULL OR ({all_missing} AND trim(BOTH concat(' ', char(0)) FROM {raw}) = '')",
                     "empty message"))
    branches.append((all_missing, "not a JSON object with tick fields"))
    branches += [(f"{field(f.name)} IS NULL", f"field '{f.name}' is missing or not a valid {f.json_type}")
                 for f in TICK_FIELDS if not f.nullable]
    branches += [(bound.violated_sql(field(bound.field)), f"field '{bound.field}' {bound.broken}") for bound in BOUNDS]
    # What the sinks cannot hold: PostgreSQL's TEXT takes no NUL, a lake directory name is short,
    # NUMERIC(18,8) neither holds 10^10 nor a ninth decimal (never null or round one silently;
    # but Spark's parse has already rounded past the tenth place: docs/failure-and-recovery.md).
    index = field("index")
    branches += [
        (f"char_length({index}) = 0", "field 'index' is empty"),
        (f"instr({index}, char(0)) > 0", "field 'index' contains a NUL character"),
        (f"char_length({index}) > {INDEX_MAX_LENGTH}",
         f"field 'index' is longer than {INDEX_MAX_LENGTH} characters"),
        (f"octet_length({index}) > {INDEX_MAX_BYTES}",
         f"field 'index' is longer than {INDEX_MAX_BYTES} bytes in UTF-8"),
    ]
    first, last = YEAR_RANGE
    # Compared with literals rather than through year(): the same test on the stored day or
    # microsecond count, without building a calendar date per row (measured ~4% of task time).
    # stream_ts in UTC: the session's time zone.
    bounds = {"date": (f"DATE'{first:04d}-01-01'", f"DATE'{last:04d}-12-31'"),
              "stream_ts": (f"TIMESTAMP'{first:04d}-01-01 00:00:00'", f"TIMESTAMP'{last:04d}-12-31 23:59:59.999999'")}
    branches += [(f"{field(name)} < {lowest} OR {field(name)} > {highest}",
                  f"field '{name}' is out of range (years {first} to {last})")
                 for name, (lowest, highest) in bounds.items()]
    stored_type = {f.name: f.spark_type for f in TICK_FIELDS}
    for name in PRICE_FIELDS:
        price = field(name)
        as_stored = f"{kept}{name}" if kept else f"try_cast({price} AS {stored_type[name]})"
        # An optional price that is present but did not parse ("abc", NaN, 1e308) would be stored
        # as NULL; the raw text is looked at only for the rare NULL price (a second JSON parse).
        # The cast rounds half up: a NULL from it is a price at or past the limit, or one below
        # it whose rounding reached it, which had more places than the sinks keep.
        branches += [
            (f"{price} IS NULL AND get_json_object({raw}, '$.{name}') IS NOT NULL",
             f"field '{name}' is not a valid number or is out of range"),
            (f"{as_stored} IS NULL AND abs({price}) >= {PRICE_LIMIT}",
             f"field '{name}' is out of range (prices stay below {PRICE_LIMIT:,})"),
            (f"NOT ({as_stored} <=> {price})", f"field '{name}' has more than {PRICE_SCALE} decimal places"),
        ]
    # Each reason goes to the JVM as a plain value, which makes it the literal: F.lit would import
    # pandas on a job's start (numpy_converters.py).
    (condition, text), *rest = branches
    reason = F.when(F.expr(condition), text)
    for condition, text in rest:
        reason = reason.when(F.expr(condition), text)
    return reason


def _optimizer_barrier(column: Column) -> Column:
    """``column`` unchanged, but nondeterministic in the optimizer's eyes.

    Without this, a filter on the reason is pushed below the projection and ``from_json`` is
    inlined into it once per field checked, evaluated without code generation: measured 4x
    slower on 200k messages. Spark never pushes a filter through a nondeterministic projection.
    The branch is never taken: partition ids are never negative.
    """
    return F.when(F.spark_partition_id() < 0, F.expr("CAST(NULL AS STRING)")).otherwise(column)


def _sanitized(text: str) -> Column:
    """The SQL expression ``text`` as valid UTF-8 without NUL characters (PostgreSQL's TEXT
    rejects both).

    The repair runs only on the rare value that needs it: applied to every row, ``translate`` made
    parsing ~2x slower (measured: 2.0 s against 0.8-1.1 s per 100k messages), while the two checks
    guarding it are cheap scans. Both branches give the same string for a value that is already clean.
    SQL text because ``functions.instr`` and ``translate`` wrap their arguments in ``lit``, which
    imports pandas on a job's start (numpy_converters.py).
    """
    return F.expr(f"CASE WHEN is_valid_utf8({text}) AND instr({text}, char(0)) = 0 THEN {text} "
                  f"ELSE translate(make_valid_utf8({text}), char(0), '') END")


def tick_columns() -> tuple[list[Column], ...]:
    """The projections :func:`to_ticks` applies, as columns that name their inputs only.

    Building them takes ~2,700 py4j calls (~1 s of the driver, measured); they belong to no
    DataFrame, so a job builds them once and applies them to every query's records.
    """
    raw = F.col("value").cast("string")
    parsed = F.from_json(raw, spark_tick_schema(), {"mode": "PERMISSIVE"})
    volume = F.col("t.volume").cast("DECIMAL(19,0)")
    stored = {f.name: f for f in TICK_FIELDS}
    lineage = ["topic", "partition", "offset", "timestamp"]
    parse = [
        *[F.col(name) for name in lineage],
        F.col("key").alias("raw_key"), raw.alias("raw_value"), parsed.alias("t"),
        # A nondeterministic column stops the optimizer from pushing a later filter on the
        # reason below this projection, which would inline from_json once per field it checks
        # (measured: 4x slower on 100k messages). It is dropped in the next projection.
        F.spark_partition_id().alias("_parse_barrier"),
    ]
    # Prices were parsed wide to be checked; each is cast to its stored type once, here, and both
    # the stored column and the reasons read the cast (an invalid price becomes NULL: try_cast,
    # never an error). Used more than once, the cast is not inlined into the next projection.
    keep = [
        *[F.col(name) for name in [*lineage, "raw_key", "raw_value", "t"]],
        *[F.col(f"t.{name}").try_cast(stored[name].spark_type).alias(f"{KEPT}{name}") for name in PRICE_FIELDS],
    ]
    enrich = [
        *[F.col(f"{KEPT}{name}" if name in PRICE_FIELDS else f"t.{name}").alias(name) for name in stored],
        (F.col(f"{KEPT}close") * volume).cast(TRADE_VALUE.spark_type).alias(TRADE_VALUE.name),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.coalesce(F.col("timestamp"), F.expr("timestamp_seconds(0)")).alias("kafka_timestamp"),
        F.col("raw_key"),
        F.col("raw_value"),
        _optimizer_barrier(dead_letter_reason("t", "raw_value", KEPT)).alias(REASON_COLUMN),
    ]
    dead = F.col(REASON_COLUMN).isNotNull()
    name = [
        *[F.col(f.name) for f in STORED_FIELDS],
        F.when(dead, _sanitized("CAST(raw_key AS STRING)")).alias("kafka_key"),
        F.when(dead, _sanitized("raw_value")).alias("raw_value"),
        F.col(REASON_COLUMN),
    ]
    return parse, keep, enrich, name


def to_ticks(records: DataFrame, columns: tuple[list[Column], ...] | None = None) -> DataFrame:
    """Kafka rows (official source shape) -> contract columns + trade_value + lineage + reason,
    through ``columns`` from :func:`tick_columns` (built here when not given).

    Rows with a non-null ``dead_letter_reason`` carry ``kafka_key`` and ``raw_value`` (made valid
    UTF-8 without NUL) so the Postgres sink can file them as dead letters; for valid rows both are
    NULL, since neither sink stores them. The Parquet sink keeps only valid rows.

    The JSON is parsed as it came: invalid UTF-8 reaches the parser as U+FFFD, and a NUL can only
    reach a stored field through ``index``, which the reasons check. Repairing every message
    before parsing cost ~15% of the job's task time (the profile in ``docs/performance.md``); the
    repair now runs on dead letters only.
    """
    projections = columns if columns is not None else tick_columns()
    for projection in projections:
        records = records.select(*projection)
    return records


def valid_ticks(ticks: DataFrame) -> DataFrame:
    """Only the rows that satisfy the contract, in ``STORED_FIELDS`` order (the lake's columns)."""
    return ticks.where(F.col(REASON_COLUMN).isNull()).select(*[f.name for f in STORED_FIELDS])

