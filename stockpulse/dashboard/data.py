"""The page's access to PostgreSQL: one cached engine per URL and short-lived cached results.

Results are cached for :data:`RESULT_TTL_SECONDS`, shorter than the refresh, so every viewer of
the page shares one query per refresh instead of sending their own. Any database failure (a driver
error, a full pool, ...) becomes a :class:`DatabaseUnavailable` whose message is one line naming the
(redacted) URL; the page shows it and its fragment keeps polling, so the page recovers by itself
when PostgreSQL comes back. Failures are never cached: Streamlit caches return values, not
exceptions, so the next refresh asks PostgreSQL again.
"""

from __future__ import annotations

import logging
import re

import streamlit as st
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from stockpulse.config import redact_url
from stockpulse.dashboard import queries
from stockpulse.config import READER_ROLE
from stockpulse.dashboard.settings import sqlalchemy_url
from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)

RESULT_TTL_SECONDS = 2
CONNECT_TIMEOUT_SECONDS = 3
"""A page waiting on a dead server should say so quickly, not hang the refresh."""
STATEMENT_TIMEOUT_MS = 10_000
"""A guard, not an expectation: every statement is index-backed or bounded (see ``queries``)."""
SESSION_OPTIONS = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c default_transaction_read_only=on"
"""libpq ``options`` for every dashboard connection."""
POOL_TIMEOUT_SECONDS = 5
"""How long a refresh waits for a free pooled connection before it says so."""
INDEX_OPTIONS_TTL_SECONDS = 30
"""The picker's indices change rarely; the live part clears them early when the first ticks land."""


class DatabaseUnavailable(ServiceError):
    """PostgreSQL could not answer; the message is one line for the page."""


_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")
_MISSING_TABLE = re.compile(r'relation "([^"]+)" does not exist')
_DENIED_TABLE = re.compile(r"permission denied for (?:table|relation) (\S+)")


def describe_error(exc: BaseException, url: str) -> str:
    """One line a user can act on, from a driver error; never the password, never a traceback."""
    original = getattr(exc, "orig", None) or exc
    state = getattr(original, "sqlstate", None)
    where = redact_url(url)
    if state == "42P01":
        missing = _MISSING_TABLE.search(str(original))
        table = missing.group(1) if missing else queries.TABLE
        return f"table {table} does not exist in {where}: apply postgres/init.sql ('make up' does)"
    if state == "42501":
        denied = _DENIED_TABLE.search(str(original))
        table = denied.group(1) if denied else queries.TABLE
        return (f"the dashboard's role may not read {table} at {where}: grant it SELECT "
                f"(postgres/init.sql does for {READER_ROLE})")
    if state == "57014":
        return f"a dashboard query at {where} ran longer than {STATEMENT_TIMEOUT_MS // 1000} s and was cancelled"
    text = _BACKGROUND.sub("", str(original))  # SQLAlchemy's own errors end with a link to its docs
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = re.sub(r"\s+", " ", lines[0]) if lines else type(original).__name__  # the rest is libpq's hint
    return f"cannot read PostgreSQL at {where}: {reason[:300]}"


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.dispose())
def engine(url: str) -> Engine:
    """One pool per URL for the whole server; pre-ping drops connections a restart has killed.

    Every session is read-only whatever the role's defaults (``default_transaction_read_only``),
    so even a writer's URL in ``DASHBOARD_DATABASE_URL`` cannot change data through the page.
    """
    return create_engine(
        sqlalchemy_url(url), pool_size=2, max_overflow=2, pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_pre_ping=True, pool_recycle=300,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": SESSION_OPTIONS},
    )


_last_failure: dict[str, str] = {}


def _read(url: str, query, *args):
    try:
        with engine(url).connect() as conn:
            result = query(conn, *args)
    except sa_exc.SQLAlchemyError as exc:  # driver errors, and the pool's own (e.g. its timeout)
        message = describe_error(exc, url)
        if _last_failure.get(url) != message:  # log each new failure once, not on every refresh
            logger.warning("%s", message)
        _last_failure[url] = message
        raise DatabaseUnavailable(message) from None
    if _last_failure.pop(url, None):
        logger.info("PostgreSQL at %s answers again", redact_url(url))
    return result


@st.cache_data(ttl=RESULT_TTL_SECONDS, show_spinner=False)
def live(url: str, limit: int, indices: tuple[str, ...]) -> queries.Live:
    """The header and the charts, cached together so a refresh never pairs one's old result
    with the other's new one."""
    return _read(url, queries.live, limit, indices)


@st.cache_data(ttl=RESULT_TTL_SECONDS, show_spinner=False)
def pipeline_facts(url: str) -> queries.PipelineFacts:
    return _read(url, queries.pipeline_facts)


@st.cache_data(ttl=INDEX_OPTIONS_TTL_SECONDS, show_spinner=False)
def _recent_indices(url: str) -> list[str]:
    return _read(url, queries.recent_indices)


def index_options(url: str) -> list[str]:
    """Indices for the picker; empty while the database is unreachable (the live part says why).

    A failure raises out of the cached function, so it is not cached: the next run asks again.
    """
    try:
        return _recent_indices(url)
    except DatabaseUnavailable:
        return []


def forget_index_options() -> None:
    """Drop the cached picker options, e.g. when ticks appear while the picker had none."""
    _recent_indices.clear()
