"""PostgreSQL access shared by the set-up, the consumer and the checks: connect, apply init.sql.

psycopg 3 is the client: it speaks COPY natively (the bulk path the Spark sink uses) and its
binary wheel needs no system libraries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stockpulse.config import PROJECT_ROOT, redact_url
from stockpulse.errors import ServiceError, ServiceUnavailable

logger = logging.getLogger(__name__)

INIT_SQL = PROJECT_ROOT / "postgres" / "init.sql"


def connect(url: str, autocommit: bool = False, connect_timeout: int = 10):
    """A psycopg connection; an unreachable server becomes a one-line :class:`ServiceError`."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.ProgrammingError:  # libpq could not parse the URL; its message may quote the password
        raise ServiceError(f"{redact_url(url)} is not a PostgreSQL URL libpq can parse "
                           "(expected postgresql://user[:password]@host[:port]/database)") from None
    except psycopg.OperationalError as exc:
        error = ServiceError if lasting_failure(str(exc), getattr(exc, "sqlstate", None)) else ServiceUnavailable
        raise error(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {connect_failure(str(exc))} "
            "(start it with 'make services' or fix DATABASE_URL)"
        ) from None


LASTING_FAILURES = ("password authentication failed", "no password supplied", "does not exist",
                    "no pg_hba.conf entry", "permission denied")
"""What a server that answers says when waiting will not help: wrong credentials, no such database."""


def lasting_failure(message: str, sqlstate: str | None = None) -> bool:
    """True when a failed connect was refused by a server that is up (SQLSTATE class 28, invalid
    authorisation, or 3D000, no such database): retrying it would only delay the real error."""
    if sqlstate and (sqlstate.startswith("28") or sqlstate == "3D000"):
        return True
    return any(phrase in message for phrase in LASTING_FAILURES)


def connect_failure(message: str) -> str:
    """The line of a libpq error that says why (``Connection refused``), not its hint
    (``Is the server running...``), and never the password it may quote."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    causes = [line for line in lines if not line.lower().startswith("is the server running")]
    return redact_url((causes or lines or ["unknown error"])[-1])


INIT_SQL_LOCK = 746173
"""The advisory-lock key that serialises every application of init.sql on a server (any number:
what matters is that every StockPulse process uses this one, and nothing else does)."""


def execute_ddl(url: str, sql: str, lock_id: int) -> None:
    """Run idempotent DDL under an advisory lock, so two starters never race on
    ``CREATE ... IF NOT EXISTS`` (which can fail with a duplicate-key error when concurrent)."""
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        try:
            conn.execute(sql)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))


def apply_init_sql(url: str, path: Path = INIT_SQL) -> None:
    """Create the tables and indexes if absent; safe to run concurrently and repeatedly."""
    execute_ddl(url, path.read_text(), INIT_SQL_LOCK)
    logger.info("applied %s to %s", path.name, redact_url(url))
