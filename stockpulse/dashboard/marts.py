"""The dbt marts, read from their DuckDB file (``ANALYTICS_DUCKDB``) for the analytics view.

dbt builds the marts in a new file and renames it over the old one, so the page must never hold
the file open: a connection kept across refreshes would pin the replaced file and show stale
marts, and a read-write one would lock out the build. Each read opens the file read-only, runs
three small statements and closes it at once.

The marts change only when dbt runs (minutes apart), while the page refreshes every few seconds,
so each refresh only looks at the file's identity (modification time, size, inode): the cached
marts are read again the moment that changes, and not before. A failed read is not cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)

BUILD_COMMAND = "python -m stockpulse.lakehouse.dbt_build"
NOT_BUILT = f"No analytics yet: the lake_compaction DAG builds them; run `{BUILD_COMMAND}`."

STATEMENTS = {
    "indices": 'SELECT "index", region, exchange, currency FROM main.dim_index ORDER BY "index"',
    "daily": 'SELECT "index", date, close, close_usd, rebased_close, volatility_20d '
             'FROM main.fct_index_daily ORDER BY "index", date',
    "yearly_share": 'SELECT "index", year, trade_value_usd, trade_value_usd_share '
                    'FROM main.fct_volume_share ORDER BY year, "index"',
}
"""Only the columns the view uses, named: a mart that gains columns changes nothing here."""

MARTS_TTL_SECONDS = 3600
"""A safety net only: a rebuilt file has a new identity and is read at once."""


class MartsUnavailable(ServiceError):
    """The marts file is there but could not be read; the message is one line for the page."""


@dataclass(frozen=True)
class Marts:
    indices: pd.DataFrame  # dim_index: index, region, exchange, currency
    daily: pd.DataFrame  # fct_index_daily: index, date (UTC midnight), close, close_usd, rebased_close, volatility_20d
    yearly_share: pd.DataFrame  # fct_volume_share: index, year, trade_value_usd, trade_value_usd_share
    built_at: float  # the file's modification time: when dbt last replaced it


def identity(path: Path) -> tuple[int, int, int] | None:
    """(mtime in ns, size, inode) of the marts file, None while it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def read(path: Path) -> Marts:
    """The three marts, from one brief read-only connection."""
    import duckdb

    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise MartsUnavailable(f"cannot open the marts in {path}: {_one_line(exc)} "
                               "(a build may be replacing the file: the page tries again)") from None
    try:
        frames = {name: conn.execute(sql).df() for name, sql in STATEMENTS.items()}
        built_at = path.stat().st_mtime
    except duckdb.Error as exc:
        raise MartsUnavailable(f"the marts in {path} are not what the page reads: {_one_line(exc)} "
                               f"(rebuild them: `{BUILD_COMMAND}`)") from None
    finally:
        conn.close()
    daily = frames["daily"]
    # a date as UTC midnight, as the live views carry it: naive times would be shifted into the
    # viewer's zone by Streamlit before Vega sees them
    daily["date"] = pd.to_datetime(daily["date"]).dt.tz_localize("UTC")
    for column in ("close", "close_usd", "rebased_close", "volatility_20d"):
        daily[column] = pd.to_numeric(daily[column]).astype("float64")
    share = frames["yearly_share"]
    share["year"] = share["year"].astype("int64")
    for column in ("trade_value_usd", "trade_value_usd_share"):
        share[column] = pd.to_numeric(share[column]).astype("float64")
    return Marts(frames["indices"], daily, share, built_at)


@st.cache_data(ttl=MARTS_TTL_SECONDS, max_entries=2, show_spinner=False)
def _cached_read(path: str, version: tuple[int, int, int]) -> Marts:
    logger.info("reading the marts in %s", path)
    return read(Path(path))


def load(path: Path) -> Marts | None:
    """The marts, None while dbt has not built the file yet; :class:`MartsUnavailable` on a bad file."""
    version = identity(path)
    if version is None:
        return None
    return _cached_read(str(path), version)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]

