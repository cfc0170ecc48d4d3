"""Enrichment and dead-letter reasons, on a real local Spark session over hand-made Kafka rows.

Spark is a library here, not a service: ``local[1]`` in this process, no broker, no database.
"""

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from stockpulse.stream.job import use_official_source
from stockpulse.replay.csv_rows import TickRow, encode_message, format_stream_ts
from stockpulse.schema import REASON_COLUMN, STORED_FIELDS

STAMP = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def spark():
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[1]").appName("stockpulse-unit")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def kafka_rows(spark, values):
    from pyspark.sql.types import (
        BinaryType, IntegerType, LongType, StringType, StructField, StructType, TimestampType,
    )

    schema = StructType([
        StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
        StructField("partition", IntegerType()), StructField("offset", LongType()),
        StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
    ])
    rows = [(b"HSI", v, "t", 0, i, STAMP, 0) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, schema)


def tick(close="25000.12345678", volume=123456789, **overrides):
    fields = dict(date=datetime(2020, 1, 2).date(), index="HSI", open=None, high=None, low=None,
                  close=Decimal(close), adj_close=None, volume=volume, close_usd=None)
    fields.update(overrides)
    return encode_message(TickRow(**fields), format_stream_ts(STAMP))


def test_trade_value_is_exactly_close_times_volume(spark):
    from stockpulse.stream.transform import to_ticks, valid_ticks

    values = [tick(), tick(close="0.00000001", volume=1), tick(close="99999999.99999999", volume=10**12)]
    out = valid_ticks(to_ticks(kafka_rows(spark, values))).collect()
    assert [r["trade_value"] for r in out] == [
        Decimal("25000.12345678") * 123456789, Decimal("0.00000001"), Decimal("99999999.99999999") * 10**12]
    assert list(out[0].asDict()) == [f.name for f in STORED_FIELDS]
    assert out[0]["kafka_offset"] == 0 and out[0]["kafka_topic"] == "t"


def test_one_set_of_tick_columns_serves_every_query(spark):
    """The job builds the columns once and applies them to each query's records: they name
    their inputs, so a second DataFrame gets its own rows and reasons, not the first one's."""
    from stockpulse.stream.transform import tick_columns, to_ticks

    columns = tick_columns()
    first = to_ticks(kafka_rows(spark, [tick(), b"{}"]), columns).collect()
    second = to_ticks(kafka_rows(spark, [b"not json", tick(close="2.5", volume=4)]), columns).collect()
    fresh = to_ticks(kafka_rows(spark, [b"not json", tick(close="2.5", volume=4)])).collect()
    assert second == fresh
    assert [r[REASON_COLUMN] is None for r in first] == [True, False]
    assert [r[REASON_COLUMN] is None for r in second] == [False, True]
    assert second[1]["trade_value"] == Decimal("10") and second[0]["raw_value"] == "not json"


def _message(**fields) -> bytes:
    """A JSON tick with ``fields`` changed, as another producer might send it."""
    body = {"stream_ts": "2026-11-23T12:00:00Z", "date": "2020-01-02", "index": "HSI", "close": 1.5, "volume": 1}
    return json.dumps({**body, **fields}).encode()


@pytest.mark.parametrize("value, reason", [
    (b"", "empty message"),
    (b" \x00\x00 ", "empty message"),
    (b"not json", "not a JSON object with tick fields"),
    (b'{"stream_ts": "2026-11-23T12:00:00Z", "date": "2020-01-02", "index": "HSI", "volume": 1}',
     "field 'close' is missing or not a valid number"),
    (b'{"stream_ts": "2026-11-23T12:00:00Z", "date": "2020-01-02", "index": "HSI", "close": "x", "volume": 1}',
     "field 'close' is missing or not a valid number"),
    (tick(close="-1"), "field 'close' is not positive"),
    (tick(volume=-5), "field 'volume' is negative"),
    # What the sinks cannot hold: each of these stopped the job, or was stored changed, before.
    (_message(index="H\u0000SI"), "field 'index' contains a NUL character"),
    (_message(index="Q" * 5_000_000), "field 'index' is longer than 64 characters"),
    (_message(open=1e15), "field 'open' is out of range (prices stay below 10,000,000,000)"),
    (_message(close=1e12), "field 'close' is out of range (prices stay below 10,000,000,000)"),
    (_message(close=1.123456789), "field 'close' has more than 8 decimal places"),
    # Found by tests/integration/stream/test_hostile_ticks.py: each stopped a sink, or was stored changed.
    (_message(date="0000-01-01"), "field 'date' is out of range (years 1 to 9999)"),
    (_message(date="20200102"), "field 'date' is out of range (years 1 to 9999)"),
    (_message(stream_ts="0001-01-01T00:00:00+01:00"), "field 'stream_ts' is out of range (years 1 to 9999)"),
    (_message(stream_ts=9223372036855), "field 'stream_ts' is out of range (years 1 to 9999)"),
    (_message(index="\U0001F642" * 64), "field 'index' is longer than 128 bytes in UTF-8"),
    (_message(index=""), "field 'index' is empty"),
    (_message(open="abc"), "field 'open' is not a valid number or is out of range"),
    (_message(high=1e308), "field 'high' is not a valid number or is out of range"),
], ids=["empty", "nul-and-spaces", "not-json", "close-missing", "close-text", "close-negative", "volume-negative", "nul-index",
        "5mb-index", "open-1e15", "close-1e12", "close-9-decimals", "date-year-0", "date-digits",
        "stream-ts-year-0", "stream-ts-overflow", "index-256-bytes", "index-empty", "open-text", "high-1e308"])
def test_malformed_messages_get_a_reason_and_stay_out_of_the_lake(spark, value, reason):
    from stockpulse.stream.transform import to_ticks, valid_ticks

    ticks = to_ticks(kafka_rows(spark, [value, tick()]))
    # only the reason: a date Python cannot represent (year 0) must not fail the test's own collect
    reasons = [r[REASON_COLUMN] for r in ticks.orderBy("kafka_offset").select(REASON_COLUMN).collect()]
    assert reasons == [reason, None]
    assert valid_ticks(ticks).count() == 1


def test_the_parse_schema_built_without_the_jvm_equals_its_ddl(spark):
    """``spark_tick_schema`` skips the JVM's SQL parser (its first use costs start-up time): the
    JSON form it builds must mean what the contract's DDL types say."""
    from pyspark.sql.types import StructType

    from stockpulse.schema import PARSE_PRICE_SPARK, PRICE_FIELDS, TICK_FIELDS, spark_tick_schema

    ddl = ", ".join(f"`{f.name}` {PARSE_PRICE_SPARK if f.name in PRICE_FIELDS else f.spark_type}" for f in TICK_FIELDS)
    assert spark_tick_schema() == StructType.fromDDL(ddl)


@pytest.mark.parametrize("escaped", ["true", "false"])
def test_the_reasons_mean_the_same_under_either_string_literal_setting(spark, escaped):
    """The reasons' conditions are SQL text: a user's ``escapedStringLiterals`` must not change
    what they find (a NUL written as an escape would silently stop matching)."""
    from stockpulse.stream.transform import to_ticks

    values = [b" \x00 ", _message(index="H\u0000SI"), _message(open="abc"), tick()]
    spark.conf.set("spark.sql.parser.escapedStringLiterals", escaped)
    try:
        ticks = to_ticks(kafka_rows(spark, values))
    finally:
        spark.conf.unset("spark.sql.parser.escapedStringLiterals")
    reasons = [r[REASON_COLUMN] for r in ticks.orderBy("kafka_offset").select(REASON_COLUMN).collect()]
    assert reasons == ["empty message", "field 'index' contains a NUL character",
                       "field 'open' is not a valid number or is out of range", None]


def _written(prices: str, index: str = "HSI") -> bytes:
    """A tick whose prices are written as ``prices`` (JSON members, exactly as given)."""
    rest = f'"stream_ts": "2026-11-23T12:00:00Z", "date": "2020-01-02", "index": "{index}", "volume": 1'
    return ("{" + prices + ", " + rest + "}").encode()


def test_prices_at_the_limit_get_the_reason_that_is_true_of_them(spark):
    """Both price checks read one cast to the stored decimal, which rounds half up: a price just
    below the limit with a ninth place rounds past it, and must be refused for its places, not its
    size; the largest storable price and the limit itself fall either side."""
    from stockpulse.stream.transform import to_ticks

    cases = {
        '"close": 9999999999.99999999': None,
        '"close": -9999999999.99999999': "field 'close' is not positive",
        '"close": 9999999999.999999995': "field 'close' has more than 8 decimal places",
        '"close": 1.5, "open": -9999999999.999999995': "field 'open' has more than 8 decimal places",
        '"close": 10000000000': "field 'close' is out of range (prices stay below 10,000,000,000)",
        '"close": 10000000000.000000001': "field 'close' is out of range (prices stay below 10,000,000,000)",
        '"close": 1.5, "high": null': None,
        '"close": 1.000000005': "field 'close' has more than 8 decimal places",
        '"close": 1.0000000050': "field 'close' has more than 8 decimal places",
        '"close": 1.50000000000': None,
    }
    ticks = to_ticks(kafka_rows(spark, [_written(prices) for prices in cases]))
    reasons = [r[REASON_COLUMN] for r in ticks.orderBy("kafka_offset").select(REASON_COLUMN).collect()]
    assert dict(zip(cases, reasons)) == cases


@pytest.mark.xfail(strict=True, reason="known limitation: Spark's JSON parser rounds prices to 10 places, half up, "
                   "before the checks see them (docs/failure-and-recovery.md)")
def test_places_beyond_the_parse_scale_are_refused_too(spark):
    """Pins the limitation: these are stored rounded (1.00000000001 as 1, 1e-20 as 0), not dead
    letters. Exact checks were measured at +12% to +47% of the parse (docs/performance.md);
    whoever fixes it removes the mark."""
    from stockpulse.stream.transform import to_ticks

    values = [_written('"close": 1.00000000001'), _written('"close": 1.5, "open": 1e-20')]
    reasons = [r[REASON_COLUMN] for r in to_ticks(kafka_rows(spark, values)).orderBy("kafka_offset").collect()]
    assert reasons == ["field 'close' has more than 8 decimal places", "field 'open' has more than 8 decimal places"]


def test_numbers_written_long_or_with_an_exponent_keep_their_exact_value(spark):
    from stockpulse.stream.transform import to_ticks, valid_ticks

    cases = {
        _written('"close": 1.5e2'): Decimal("150"),
        _written('"close": 1.10000000000000000000'): Decimal("1.1"),
        _written('"close": 123456789E-8, "open": 0e-50'): Decimal("1.23456789"),
        _written('"close": "1,000.500000000000"'): Decimal("1000.5"),
        _written('"close": 2.5', index="N1e5.00000000000001"): Decimal("2.5"),  # the text outside the prices
    }
    rows = valid_ticks(to_ticks(kafka_rows(spark, list(cases)))).collect()
    assert [r["close"] for r in rows] == list(cases.values())


@pytest.mark.parametrize("wanted, on_classpath, expected", [
    ("auto", True, True), ("auto", False, False), ("python", True, False), ("builtin", True, True),
])
def test_which_kafka_source_reads(wanted, on_classpath, expected):
    assert use_official_source(wanted, on_classpath) is expected


def test_builtin_without_the_connector_is_one_clear_line():
    from stockpulse.errors import ConfigError

    with pytest.raises(ConfigError, match="--packages org.apache.spark:spark-sql-kafka-0-10_2.13:"):
        use_official_source("builtin", False)


@pytest.mark.parametrize("conf, expected", [
    ({"spark.jars.packages": "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"}, True),
    ({"spark.jars": "/x/spark-sql-kafka-0-10_2.13-4.2.0.jar,/x/kafka-clients.jar"}, True),
    ({"spark.jars": "/x/other.jar"}, False), ({}, False),
])
def test_a_connector_given_to_spark_submit_is_not_added_twice(conf, expected):
    from stockpulse.stream.job import connector_submitted

    assert connector_submitted(conf) is expected


def test_the_huge_method_jit_flag_joins_jvm_options_once_and_never_overrides_a_choice():
    from stockpulse.stream.job import with_java_options

    assert with_java_options(None) == "-XX:-DontCompileHugeMethods"
    assert with_java_options("-Xss4m") == "-Xss4m -XX:-DontCompileHugeMethods"
    assert with_java_options("-XX:-DontCompileHugeMethods -Xss4m") == "-XX:-DontCompileHugeMethods -Xss4m"
    assert with_java_options("-XX:+DontCompileHugeMethods") == "-XX:+DontCompileHugeMethods"

