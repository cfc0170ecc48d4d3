"""The PostgreSQL sink against a real PostgreSQL, fed Arrow tables as ``foreachBatch`` would.

What is proved, and why it matters:

- a batch never seen before is COPYed straight into its table (the fast path) and the count of
  rows written is returned;
- a batch seen before (a micro-batch Spark replays after a crash, a topic re-read after a
  checkpoint reset) makes that COPY hit the unique Kafka-record key; the failure is rolled back
  to a savepoint, the batch goes through the staging table with ``ON CONFLICT DO NOTHING``,
  nothing is doubled, 0 new rows are reported, and the caller's transaction is still usable:
  rows it wrote before the replay are committed with it;
- a batch mixing known and new records lands exactly the new ones;
- ticks and dead letters of one micro-batch land in one transaction: both or neither;
- exactly-once does not come from the batch id (the sink ignores it) but from the record key
  (topic, partition, offset, record timestamp): the same records under any batch id or any batch
  boundaries change nothing, while a recreated topic's record at a reused offset is new.

No Spark: ``PostgresSink.write_arrow`` takes the collected Arrow table, and ``__call__`` gets an
object whose ``toArrow`` returns one, as ``foreachBatch``'s DataFrame would.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from stockpulse.db import connect
from stockpulse.ops.services.postgres import read_passfile
from stockpulse.schema import REASON_COLUMN, STORED_FIELDS
from stockpulse.stream.sinks import postgres as sink_module
from stockpulse.stream.sinks.postgres import TICK_COLUMNS, PostgresSink, insert_idempotent

UTC = dt.timezone.utc
RECORD_TS = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def _arrow_type(spark_type: str) -> pa.DataType:
    """The Arrow type Spark's ``toArrow`` gives a column of ``spark_type``."""
    decimal = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", spark_type)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    return {"TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(), "STRING": pa.string(),
            "BIGINT": pa.int64(), "INT": pa.int32()}[spark_type]


# A collected micro-batch of the Postgres query: the stored columns, the dead-letter payload and
# the reason (NULL for a valid tick), as stockpulse.stream.transform.to_ticks shapes it.
BATCH_SCHEMA = pa.schema([pa.field(f.name, _arrow_type(f.spark_type)) for f in STORED_FIELDS]
                         + [pa.field("kafka_key", pa.string()), pa.field("raw_value", pa.string()),
                            pa.field(REASON_COLUMN, pa.string())])


def tick(offset: int, partition: int = 0, topic: str = "ticks", record_ts: dt.datetime = RECORD_TS) -> dict:
    close, volume = Decimal("101.25000000"), 7 + offset
    return {
        "stream_ts": dt.datetime(2026, 3, 4, 5, 6, 0, tzinfo=UTC) + dt.timedelta(seconds=offset),
        "date": dt.date(2021, 5, 28), "index": "HSI",
        "open": Decimal("100.5"), "high": Decimal("102"), "low": Decimal("100"), "close": close,
        "adj_close": close, "volume": volume, "close_usd": Decimal("13.03"), "trade_value": close * volume,
        "kafka_topic": topic, "kafka_partition": partition, "kafka_offset": offset, "kafka_timestamp": record_ts,
        "kafka_key": None, "raw_value": None, REASON_COLUMN: None,
    }


def dead_letter(offset: int, raw_value: str | None, reason: str = "not a JSON object with tick fields",
                partition: int = 0, topic: str = "ticks") -> dict:
    row = {name: None for name in BATCH_SCHEMA.names}
    row.update({"kafka_topic": topic, "kafka_partition": partition, "kafka_offset": offset,
                "kafka_timestamp": RECORD_TS, "kafka_key": "HSI", "raw_value": raw_value, REASON_COLUMN: reason})
    return row


def batch(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=BATCH_SCHEMA)


def ticks_table(offsets, **kwargs) -> pa.Table:
    """Only the ``ticks_raw`` columns, as ``write_arrow`` hands them to ``insert_idempotent``."""
    return batch([tick(o, **kwargs) for o in offsets]).select(TICK_COLUMNS)


def keys(url: str, table: str = "ticks_raw") -> list[tuple]:
    with connect(url) as conn:
        return conn.execute(f"SELECT kafka_partition, kafka_offset FROM {table} "
                            "ORDER BY kafka_partition, kafka_offset").fetchall()


def staging_exists(conn) -> bool:
    """Whether this session created the temporary staging table (only the slow path does)."""
    return conn.execute("SELECT to_regclass('pg_temp.ticks_raw_staging') IS NOT NULL").fetchone()[0]


@pytest.fixture
def sink(database_url):
    s = PostgresSink(database_url)
    yield s
    s.close()


# -- insert_idempotent ---------------------------------------------------------------------------

def test_a_new_batch_is_copied_straight_into_the_table(database_url):
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            written = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table(range(5)))
        assert written == 5
        assert not staging_exists(conn), "a batch with no known key went through staging"
    assert keys(database_url) == [(0, o) for o in range(5)]


def test_the_rows_land_with_every_value_intact(database_url):
    """The CSV the COPY sends must not round, shift a timestamp or lose a date."""
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([3]))
        row = conn.execute(f"SELECT {', '.join(TICK_COLUMNS)} FROM ticks_raw").fetchone()
    expected = {k: v for k, v in tick(3).items() if k in TICK_COLUMNS}
    assert dict(zip(TICK_COLUMNS, row)) == expected


def test_a_replayed_batch_goes_through_staging_and_changes_nothing(database_url):
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            assert insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table(range(5))) == 5
        with conn.transaction(), conn.cursor() as cursor:
            earlier = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([10, 11], partition=1))
            replayed = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table(range(5)))
            # The failed COPY was rolled back to its savepoint, not the whole transaction:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert staging_exists(conn), "the replay did not go through the staging table"
            later = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([12], partition=1))
        assert (earlier, replayed, later) == (2, 0, 1)
    assert keys(database_url) == [(0, o) for o in range(5)] + [(1, 10), (1, 11), (1, 12)]


def test_a_batch_mixing_known_and_new_records_lands_only_the_new_ones(database_url):
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([0, 1, 2]))
        with conn.transaction(), conn.cursor() as cursor:
            written = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([1, 2, 3, 4]))
        assert written == 2
    assert keys(database_url) == [(0, o) for o in range(5)]


def test_two_replays_in_one_transaction_each_count_only_their_own_new_rows(database_url):
    """The staging table keeps its rows until commit (ON COMMIT DELETE ROWS): a second replay in
    the same transaction sees the first one's rows there too, and must neither double them nor
    count them again."""
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([0, 1]))
        with conn.transaction(), conn.cursor() as cursor:
            first = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([0, 1, 2]))
            second = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([1, 2, 3]))
        assert (first, second) == (1, 1)
        assert conn.execute("SELECT count(*) FROM ticks_raw_staging").fetchone()[0] == 0  # emptied at commit
    assert keys(database_url) == [(0, o) for o in range(4)]


def test_an_empty_batch_writes_nothing(database_url):
    with connect(database_url) as conn, conn.cursor() as cursor:
        assert insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([])) == 0
    assert keys(database_url) == []


# -- PostgresSink: one micro-batch, ticks and dead letters together ---------------------------------

def test_ticks_and_dead_letters_of_a_batch_land_together(sink, database_url):
    awkward = 'line one\nline "two", with a comma'
    rows = [tick(0), dead_letter(1, awkward), tick(2), dead_letter(3, ""), dead_letter(4, None, "empty message")]
    assert sink.write_arrow(batch(rows)) == (2, 3)
    assert keys(database_url) == [(0, 0), (0, 2)]
    with connect(database_url) as conn:
        letters = conn.execute("SELECT kafka_offset, kafka_key, raw_value, reason FROM ticks_dead_letter "
                               "ORDER BY kafka_offset").fetchall()
    assert letters == [(1, "HSI", awkward, "not a JSON object with tick fields"),
                       (3, "HSI", "", "not a JSON object with tick fields"),  # empty stays empty, not NULL
                       (4, "HSI", None, "empty message")]


def test_dead_letters_that_cannot_be_written_take_the_batchs_ticks_with_them(sink, database_url):
    """One transaction: if the dead letters fail, the ticks before them are not committed either
    (Spark then fails the batch and replays it whole), and the sink reconnects for the next one."""
    broken = dead_letter(1, "x")
    broken["kafka_timestamp"] = None  # violates NOT NULL in ticks_dead_letter
    with pytest.raises(psycopg.errors.NotNullViolation):
        sink.write_arrow(batch([tick(0), broken]))
    assert keys(database_url) == [] and keys(database_url, "ticks_dead_letter") == []
    assert sink.write_arrow(batch([tick(0), dead_letter(1, "x")])) == (1, 1)
    assert keys(database_url) == [(0, 0)] and keys(database_url, "ticks_dead_letter") == [(0, 1)]


def test_a_replayed_micro_batch_reports_nothing_new_and_doubles_nothing(sink, database_url):
    rows = [tick(0), dead_letter(1, "{broken"), tick(2)]
    assert sink.write_arrow(batch(rows)) == (2, 1)
    assert sink.write_arrow(batch(rows)) == (0, 0)
    assert keys(database_url) == [(0, 0), (0, 2)] and keys(database_url, "ticks_dead_letter") == [(0, 1)]


# -- exactly-once: the record key, not the batch id ---------------------------------------------------

def test_records_are_written_once_whatever_batch_id_or_batch_boundaries_carry_them(sink, database_url):
    """Spark may run a batch id again after a crash, and a topic re-read after a checkpoint reset
    cuts the same records into different batches under new ids. The sink keys on the record."""

    class CollectedBatch:  # what foreachBatch hands over, reduced to what the sink calls
        def __init__(self, rows):
            self.table = batch(rows)

        def toArrow(self):
            return self.table

    records = [tick(o) for o in range(6)] + [dead_letter(6, "?")]
    sink(CollectedBatch(records[:4]), 0)
    sink(CollectedBatch(records[:4]), 0)  # the same batch id run again
    sink(CollectedBatch(records[2:]), 1)  # overlapping boundaries
    sink(CollectedBatch(records), 0)      # everything again, checkpoints reset
    assert keys(database_url) == [(0, o) for o in range(6)]
    assert keys(database_url, "ticks_dead_letter") == [(0, 6)]


def test_the_batch_log_line_counts_new_rows_and_hides_the_password(sink, database_url, pg_server, caplog):
    table = batch([tick(0), dead_letter(1, "?")])
    secret = read_passfile(pg_server.passfile)["stockpulse"]
    sink.url = database_url.replace("stockpulse@", f"stockpulse:{secret}@")
    with caplog.at_level(logging.INFO, logger=sink_module.__name__):
        sink(type("Batch", (), {"toArrow": lambda self: table})(), 7)
        sink(type("Batch", (), {"toArrow": lambda self: table})(), 7)
    lines = [r.getMessage() for r in caplog.records if r.name == sink_module.__name__]
    assert "postgres batch 7: 2 records, 1 new ticks, 1 new dead letters" in lines[0]
    assert "batch 7: 1 malformed messages went to ticks_dead_letter" in lines[1]
    assert "postgres batch 7: 2 records, 0 new ticks, 0 new dead letters" in lines[2] and len(lines) == 3
    assert not any(secret in line for line in lines)


def test_a_recreated_topics_record_at_a_known_offset_is_new(database_url):
    """The offset alone is no identity: a topic deleted and created again restarts at offset 0.
    The record timestamp in the key tells the two lives apart."""
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            first_life = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([0, 1]))
        with conn.transaction(), conn.cursor() as cursor:
            second_life = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS,
                                            ticks_table([0, 1], record_ts=RECORD_TS + dt.timedelta(days=1)))
        assert (first_life, second_life) == (2, 2)
        assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == 4


def test_the_same_offset_on_another_partition_or_topic_is_another_record(database_url):
    with connect(database_url) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            counts = [insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, ticks_table([0], **where))
                      for where in ({}, {"partition": 1}, {"topic": "other"}, {})]
        assert counts == [1, 1, 1, 0]
