"""The pandas side of the page: pure functions from the latest ticks to what each chart plots.

Kept apart from :mod:`stockpulse.dashboard.queries` (SQL) so they are tested with plain frames.
"""

from __future__ import annotations

import pandas as pd


def _by_time(ticks: pd.DataFrame) -> pd.DataFrame:
    return ticks.sort_values("stream_ts", kind="stable").reset_index(drop=True)


def _first_close(ticks: pd.DataFrame) -> pd.Series:
    return ticks.groupby("index")["close"].transform("first")


def pct_change_from_first(ticks: pd.DataFrame) -> pd.DataFrame:
    """Adds ``pct_change``: each index's move in percent from its first tick in the window."""
    ordered = _by_time(ticks)
    change = (ordered["close"] / _first_close(ordered) - 1.0) * 100.0
    return ordered.assign(pct_change=change.replace([float("inf"), float("-inf")], float("nan")))


def rebased_to_100(ticks: pd.DataFrame) -> pd.DataFrame:
    """Adds ``rebased``: each index's close over its first close in the window, times 100."""
    ordered = _by_time(ticks)
    rebased = ordered["close"] / _first_close(ordered) * 100.0
    return ordered.assign(rebased=rebased.replace([float("inf"), float("-inf")], float("nan")))


SHARE_MEASURES = {"volume": "volume", "trade_value": "trade value"}
"""Columns whose share per index the volume view shows, and their labels."""


def volume_share(ticks: pd.DataFrame) -> pd.DataFrame:
    """Each index's share of traded volume and of trade value in the window, in long form.

    One row per (measure, index) with ``total`` and ``share`` (0..1). When nothing traded (the
    oldest history has volume 0) the share is undefined and left as NaN rather than invented.
    """
    columns = ["measure", "index", "total", "share"]
    if ticks.empty:
        return pd.DataFrame(columns=columns)
    totals = ticks.groupby("index", sort=True)[list(SHARE_MEASURES)].sum()
    parts = []
    for column, label in SHARE_MEASURES.items():
        whole = totals[column].sum()
        share = totals[column] / whole if whole else totals[column] * float("nan")
        parts.append(pd.DataFrame({"measure": label, "index": totals.index.to_numpy(),
                                   "total": totals[column].to_numpy(), "share": share.to_numpy()}))
    return pd.concat(parts, ignore_index=True)[columns]
