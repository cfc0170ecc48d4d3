"""The analytics view's pandas: from the dbt marts to what its charts plot, with plain frames.

The marts hold the whole history (decades per index). Two choices make that readable:

- performance is rebased to 100 at each index's first trading date *in the chosen years*, and the
  years start by default where every chosen index has data, so the lines start together and
  compare like with like (the mart's own ``rebased_close`` starts each index at its first date
  ever, decades apart);
- a line chart needs no more points than the chart has pixels, so each index's series is thinned
  to at most :data:`MAX_POINTS` evenly spaced rows (always keeping its last) before it is sent to
  the browser: 50,000 rows become a few thousand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockpulse.dashboard.formatting import literal

MAX_POINTS = 800
"""Points per index and chart: about one per horizontal pixel of a half-width chart."""


def years(daily: pd.DataFrame) -> tuple[int, int]:
    """First and last year in ``fct_index_daily``."""
    return int(daily["date"].dt.year.min()), int(daily["date"].dt.year.max())


def common_start_year(daily: pd.DataFrame, indices: list[str]) -> int:
    """The first year in which every one of ``indices`` has data: where their lines can start together."""
    chosen = daily[daily["index"].isin(indices)]
    if chosen.empty:
        return years(daily)[0]
    return int(chosen.groupby("index")["date"].min().dt.year.max())


def window(daily: pd.DataFrame, indices: list[str], first_year: int, last_year: int) -> pd.DataFrame:
    """Rows of ``indices`` from ``first_year`` through ``last_year``, by index then date."""
    year = daily["date"].dt.year
    chosen = daily[daily["index"].isin(indices) & (year >= first_year) & (year <= last_year)]
    return chosen.sort_values(["index", "date"], kind="stable").reset_index(drop=True)


def rebased_in_window(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``rebased``: each index's ``rebased_close`` over its first one in the frame, times 100.

    Re-anchoring the mart's series gives the same line as rebasing ``close`` (the ratio of two
    closes does not depend on the anchor) and keeps dbt as the one definition of the series.
    """
    ordered = frame.sort_values(["index", "date"], kind="stable").reset_index(drop=True)
    first = ordered.groupby("index")["rebased_close"].transform("first")
    rebased = ordered["rebased_close"] / first * 100.0
    return ordered.assign(rebased=rebased.replace([np.inf, -np.inf], np.nan))


def thin(frame: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows per index, evenly spaced along the frame's order, first and last kept."""
    parts = []
    for _, rows in frame.groupby("index", sort=True):
        if len(rows) > max_points:
            rows = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[0:0]


def yearly_share(shares: pd.DataFrame, indices: list[str], first_year: int, last_year: int) -> pd.DataFrame:
    """``fct_volume_share`` rows of ``indices`` and the chosen years.

    The shares stay the mart's (of all indices that year), not re-normalised over the chosen ones:
    a bar short of 100 % tells that indices not shown traded the rest.
    """
    chosen = shares["index"].isin(indices) & shares["year"].between(first_year, last_year)
    return shares[chosen].reset_index(drop=True)


def latest_by_index(daily: pd.DataFrame, indices: pd.DataFrame) -> pd.DataFrame:
    """Per index of ``dim_index``: where it trades and its latest trading date, close and volatility."""
    latest = daily.sort_values("date", kind="stable").groupby("index").tail(1)
    table = indices.merge(latest, on="index", how="left")
    return pd.DataFrame({
        "index": [literal(str(v)) for v in table["index"]],
        "region": [literal(str(v)) for v in table["region"]],
        "exchange": [literal(str(v)) for v in table["exchange"]],
        "currency": [literal(str(v)) for v in table["currency"]],
        "latest date": [("–" if pd.isna(d) else f"{d:%Y-%m-%d}") for d in table["date"]],
        "close": [("–" if pd.isna(c) else f"{c:,.2f}") for c in table["close"]],
        "close (USD)": [("–" if pd.isna(c) else f"{c:,.2f}") for c in table["close_usd"]],
        "volatility (20 d)": [("–" if pd.isna(v) else f"{v:.2%}") for v in table["volatility_20d"]],
    })
