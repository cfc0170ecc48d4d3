"""The page's access to PostgreSQL: one cached engine per URL and short-lived cached results.

Results are cached for :data:`RESULT_TTL_SECONDS`, shorter than the refresh, so every viewer of
the page shares one query per refresh instead of sending their own. Any database failure becomes a
:class:`DatabaseUnavailable` whose message is one line naming the (redacted) URL; the page shows it
and its fragment keeps polling, so the page recovers by itself when PostgreSQL comes back.
"""

from __future__ import annotations

import logging
import re

import pandas as pd
import streamlit as st
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from stockpulse.config import redact_url
from stockpulse.dashboard import queries
from stockpulse.dashboard.settings import sqlalchemy_url
from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)

RESULT_TTL_SECONDS = 2
CONNECT_TIMEOUT_SECONDS = 3
"""A page waiting on a dead server should say so quickly, not hang the refresh."""
STATEMENT_TIMEOUT_MS = 10_000
"""A guard, not an expectation: every statement is index-backed or bounded (see ``queries``)."""


class DatabaseUnavailable(ServiceError):
    """PostgreSQL could not answer; the message is one line for the page."""


def describe_error(exc: BaseException, url: str) -> str:
    """One line a user can act on, from a driver error; never the password, never a traceback."""
    original = getattr(exc, "orig", None) or exc
    state = getattr(original, "sqlstate", None)
    where = redact_url(url)
    if state == "42P01":
        return f"table {queries.TABLE} does not exist in {where}: apply postgres/init.sql ('make up' does)"
    if state == "42501":
        return (f"the dashboard's role may not read {queries.TABLE} at {where}: grant it SELECT "
                "(postgres/init.sql does for stockpulse_reader)")
    if state == "57014":
        return f"a dashboard query at {where} ran longer than {STATEMENT_TIMEOUT_MS // 1000} s and was cancelled"
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = re.sub(r"\s+", " ", lines[0]) if lines else type(original).__name__  # the rest is libpq's hint
    return f"cannot read PostgreSQL at {where}: {reason[:300]}"


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.dispose())
def engine(url: str) -> Engine:
    """One pool per URL for the whole server; pre-ping drops connections a restart has killed."""
    return create_engine(
        sqlalchemy_url(url), pool_size=2, max_overflow=2, pool_pre_ping=True, pool_recycle=300,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                      "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
    )


_last_failure: dict[str, str] = {}


def _read(url: str, query, *args):
    try:
        with engine(url).connect() as conn:
            result = query(conn, *args)
    except sa_exc.DBAPIError as exc:
        message = describe_error(exc, url)
        if _last_failure.get(url) != message:  # log each new failure once, not on every refresh
            logger.warning("%s", message)
        _last_failure[url] = message
        raise DatabaseUnavailable(message) from None
    if _last_failure.pop(url, None):
        logger.info("PostgreSQL at %s answers again", redact_url(url))
    return result


@st.cache_data(ttl=RESULT_TTL_SECONDS, show_spinner=False)
def metrics(url: str) -> queries.Metrics:
    return _read(url, queries.metrics)


@st.cache_data(ttl=RESULT_TTL_SECONDS, show_spinner=False)
def latest_ticks(url: str, limit: int, indices: tuple[str, ...]) -> pd.DataFrame:
    return _read(url, queries.latest_ticks, limit, indices)


@st.cache_data(ttl=30, show_spinner=False)
def index_options(url: str) -> list[str]:
    """Indices for the picker; empty while the database is unreachable (the live part says why)."""
    try:
        return _read(url, queries.recent_indices)
    except DatabaseUnavailable:
        return []
