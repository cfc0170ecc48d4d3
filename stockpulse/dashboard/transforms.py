"""The pandas side of the page: pure functions from the latest ticks to what each chart plots.

Kept apart from :mod:`stockpulse.dashboard.queries` (SQL) so they are tested with plain frames.
"""

from __future__ import annotations

import pandas as pd


def _by_time(ticks: pd.DataFrame, time: str) -> pd.DataFrame:
    return ticks.sort_values(time, kind="stable").reset_index(drop=True)


def _first_close(ticks: pd.DataFrame) -> pd.Series:
    return ticks.groupby("index")["close"].transform("first")


def pct_change_from_first(ticks: pd.DataFrame, time: str = "stream_ts") -> pd.DataFrame:
    """Adds ``pct_change``: each index's move in percent from its first tick in the window, first
    along ``time`` (the column the chart runs along: ``stream_ts`` or ``date``)."""
    ordered = _by_time(ticks, time)
    change = (ordered["close"] / _first_close(ordered) - 1.0) * 100.0
    return ordered.assign(pct_change=change.replace([float("inf"), float("-inf")], float("nan")))


def rebased_to_100(ticks: pd.DataFrame, time: str = "stream_ts") -> pd.DataFrame:
    """Adds ``rebased``: each index's close over its first close in the window (first along
    ``time``), times 100."""
    ordered = _by_time(ticks, time)
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


def without_volume(shares: pd.DataFrame) -> list[str]:
    """Indices that traded no volume in the window, from :func:`volume_share`'s output, sorted.

    Their share is 0 (or undefined when nothing traded at all), so the share chart draws no bar
    for them; the page names them in words instead of leaving a legend entry with nothing beside it.
    """
    volume = shares[shares["measure"] == SHARE_MEASURES["volume"]]
    return sorted(volume.loc[volume["total"] == 0, "index"].tolist())


THIN_SHARE = 0.005
"""A share below this (0.5 %) is narrower than a pixel or two in the share chart: said in words."""


def thin_shares(shares: pd.DataFrame, below: float = THIN_SHARE) -> list[str]:
    """Indices that traded, but whose share of every measure is below ``below``, sorted.

    Their bars are too thin to see, which reads like no bar at all (in the Kaggle data the
    Shanghai index's volumes are about 10,000 times smaller than the others'), so the page names
    them in words as it does the indices without volume.
    """
    traded = shares[shares["total"] > 0]
    small = traded.groupby("index")["share"].max() < below
    return sorted(small[small].index.tolist())
