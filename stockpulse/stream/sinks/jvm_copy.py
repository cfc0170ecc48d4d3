"""PostgreSQL sink for ``foreachBatch`` that COPYs from Spark's executors, not from Python.

The Python writer (:mod:`stockpulse.stream.sinks.postgres`) collects each micro-batch to the
driver as Arrow, encodes CSV and COPYs, while the JVM that computed the batch waits: that serial
cycle set the job's rate (``docs/performance.md``). Here Spark itself encodes each row as a CSV
line for its table (:func:`csv_line`, derived from the one schema), and
``io.stockpulse.sink.PostgresCopy`` (``jvm/postgres-copy``) COPYs each partition from the task that
computed it, through the JDBC driver's ``CopyManager``. Exactly-once is the same as before, by the
Kafka identity key: a task or batch run again stores nothing twice. A task writes its partition's
ticks and dead letters in one transaction; a batch lands partition by partition, and a crash
between two partitions is completed by the replay.

The JDBC settings come from a libpq connection made with ``DATABASE_URL`` (:func:`jdbc_target`),
so a password from a ``passfile`` or ``PGPASSWORD`` reaches the executors just as libpq used it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from stockpulse.config import redact_url
from stockpulse.errors import ConfigError, ServiceError
from stockpulse.schema import DEAD_LETTER_FIELDS, IDENTITY_COLUMNS, REASON_COLUMN, STORED_FIELDS, Field
from stockpulse.stream.sinks.postgres import cause_of, is_transient, with_retries

logger = logging.getLogger(__name__)

WRITER_CLASS = "io.stockpulse.sink.PostgresCopy"
DRIVER_CLASS = "org.postgresql.Driver"
UNAVAILABLE = "io.stockpulse.sink.PostgresCopy$Unavailable: "
"""How a failure worth a retry (a lost connection, a server shutting down) shows in the Java trace."""
_JAVA_CAUSE = re.compile(r"^(?:Caused by: )?(?P<cls>(?:[a-z]\w*\.)+[A-Z][\w$]*(?:Exception|Error)): (?P<msg>.+)$")

TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"
"""Microseconds and the offset (``Z``: the job's session time zone is UTC), so PostgreSQL's
``timestamptz`` reads the instant Spark holds whatever the server's own time zone."""

JDBC_PARAMETERS = ("options", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name")
"""libpq parameters with the same name and meaning in the JDBC driver; passed on when set
(``options`` carries a ``search_path``, which decides where ``ticks_raw`` is)."""


def _quoted(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


def target(table: str, fields: tuple[Field, ...]) -> str:
    """``table ("col", ...)``: what a COPY names, in the order :func:`csv_line` writes."""
    return f"{table} ({_quoted(f.name for f in fields)})"


def csv_value(field: Field, column):
    """One CSV field: empty for NULL (PostgreSQL's CSV NULL), else text; strings always quoted, with
    quotes doubled, so an empty string stays an empty string and commas or newlines stay inside."""
    from pyspark.sql import functions as F

    # Constants as SQL text, not F.lit, which imports pandas on a job's start (numpy_converters.py);
    # char(34) is a double quote, written without an escape whatever the parser's settings.
    if field.spark_type == "TIMESTAMP":
        text = F.date_format(column, TIMESTAMP_FORMAT)
    elif field.spark_type == "STRING":
        quote = F.expr("char(34)")
        text = F.concat(quote, F.replace(column, quote, F.expr("repeat(char(34), 2)")), quote)
    else:  # DATE, integers, DECIMAL: Spark's text form is what PostgreSQL reads (decimals plain)
        text = column.cast("string")
    return F.coalesce(text, F.expr("''"))


def csv_line(fields: tuple[Field, ...], source: dict | None = None):
    """A Column with each row's CSV line for a table of ``fields``; ``source`` maps a field to the
    column holding it when the names differ (the dead letter's ``reason``)."""
    from pyspark.sql import functions as F

    source = source or {}
    return F.concat_ws(",", *[csv_value(f, F.col(source.get(f.name, f.name))) for f in fields])


def encoding() -> tuple:
    """The two columns of what ``PostgresCopy`` writes: (dead letter?, CSV line).

    Built from column names only, so one pair serves every micro-batch: building them is ~200
    py4j calls, ~0.1 s of the driver's time per batch (measured), a tenth of a small batch."""
    from pyspark.sql import functions as F

    dead = F.col(REASON_COLUMN).isNotNull()
    return (dead.alias("dead"),
            F.when(dead, csv_line(DEAD_LETTER_FIELDS, {"reason": REASON_COLUMN}))
            .otherwise(csv_line(STORED_FIELDS)).alias("line"))


def encoded(batch_df, columns: tuple | None = None):
    """The micro-batch as (dead letter?, CSV line), with ``columns`` from :func:`encoding` when
    the caller keeps them."""
    return batch_df.select(*(columns or encoding()))


@dataclass(frozen=True)
class JdbcTarget:
    url: str
    user: str
    password: str | None

    def __repr__(self) -> str:  # never the password, in a log line or a traceback
        return f"JdbcTarget(url={self.url!r}, user={self.user!r})"


def jdbc_url(host: str, port: int | str, dbname: str, parameters: dict[str, str]) -> str:
    """The JDBC URL of a libpq connection to ``host``; refuses a Unix socket, which the driver
    cannot reach."""
    if not host or host.startswith("/") or host.startswith("@"):
        raise ConfigError(f"the JVM PostgreSQL writer needs a TCP host, not the Unix socket {host or '(default)'!r}: "
                          "use host=127.0.0.1 in DATABASE_URL, or POSTGRES_WRITER=python")
    if ":" in host:
        host = f"[{host}]"
    passed = {k: v for k, v in parameters.items() if k in JDBC_PARAMETERS and v}
    query = f"?{urlencode(passed)}" if passed else ""
    return f"jdbc:postgresql://{host}:{port}/{quote(dbname, safe='')}{query}"


def jdbc_target(url: str) -> JdbcTarget:
    """Where the executors connect: the host, database, user and password libpq actually used for
    ``url`` (one connection made now), so passfiles and PG* variables behave as for psycopg."""
    from stockpulse.db import connect

    with connect(url) as connection:
        info = connection.info
        parameters = info.get_parameters()
        return JdbcTarget(jdbc_url(info.host, info.port, info.dbname, parameters), info.user, info.password)


def is_unavailable(exc: BaseException) -> bool:
    """A failure of the JVM writer that a retry may cure: a lost or refused connection."""
    return UNAVAILABLE in str(exc) or is_transient(exc)


def java_cause(text: str) -> str:
    """The line of a Java trace that says what PostgreSQL refused (its ``PSQLException``), else
    the innermost ``Caused by``, else the first line: never the py4j wrapper around it."""
    found = [_JAVA_CAUSE.match(line.strip()) for line in text.splitlines()]
    found = [m for m in found if m and not m.group("cls").startswith(("py4j.", "org.apache.spark."))]
    postgres = [m for m in found if m.group("cls").startswith("org.postgresql.")]
    chosen = (postgres or found[-1:] or [None])[0]
    line = f"{chosen.group('cls').rsplit('.', 1)[-1]}: {chosen.group('msg')}" if chosen else \
        (text.strip().splitlines() or ["unknown error"])[0]
    return redact_url(line)[:300]


class JvmCopySink:
    """Callable for ``foreachBatch``: every tick record of a micro-batch to PostgreSQL, from the
    executors (:class:`io.stockpulse.sink.PostgresCopy`)."""

    def __init__(self, url: str, retry_seconds: float = 120, target: JdbcTarget | None = None) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._target = target
        self._columns: tuple | None = None  # encoding(), built at the first batch

    def _jdbc(self) -> JdbcTarget:
        """Resolved once, at the first batch when the job did not already (a server down at start)."""
        if self._target is None:
            self._target = jdbc_target(self.url)
        return self._target

    def write(self, batch_df) -> tuple[int, int]:
        """One attempt: returns (new ticks, new dead letters)."""
        jdbc = self._jdbc()
        jvm = batch_df.sparkSession._jvm
        writer = jvm.io.stockpulse.sink.PostgresCopy
        if self._columns is None:
            self._columns = encoding()
        counts = writer.write(encoded(batch_df, self._columns)._jdf, jdbc.url, jdbc.user, jdbc.password,
                              target("ticks_raw", STORED_FIELDS), target("ticks_dead_letter", DEAD_LETTER_FIELDS),
                              _quoted(IDENTITY_COLUMNS))
        return int(counts[0]), int(counts[1])

    def __call__(self, batch_df, batch_id: int) -> None:
        from py4j.protocol import Py4JJavaError

        started = time.monotonic()
        try:
            ticks, dead = with_retries(lambda: self.write(batch_df), self.url, self.retry_seconds, batch_id,
                                       is_unavailable, unavailable_cause)
        except Py4JJavaError as exc:  # refused for good (bad data, a missing table): its cause in one line
            raise ServiceError(f"writing batch {batch_id} to PostgreSQL at {redact_url(self.url)} failed: "
                               f"{java_cause(str(exc))}") from None
        logger.info("postgres batch %d: %d new ticks, %d new dead letters (%s); read+parse+write %.2f s on the executors",
                    batch_id, ticks, dead, redact_url(self.url), time.monotonic() - started)
        if dead:
            logger.warning("batch %d: %d malformed messages went to ticks_dead_letter", batch_id, dead)

    def close(self) -> None:
        """Nothing to close on the driver: the executors keep their own connections."""


def unavailable_cause(exc: BaseException) -> str:
    """The JVM writer's one line (``PostgreSQL unavailable [08001]: Connection ... refused``), not
    the Java stack trace around it."""
    text = str(exc)
    start = text.find(UNAVAILABLE)
    if start < 0:
        return cause_of(exc)
    return redact_url(text[start + len(UNAVAILABLE):].splitlines()[0])[:300]
