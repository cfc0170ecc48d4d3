"""Which time the price views run along: the replayed trading date, or the stream's clock.

Every tick carries both. ``date`` is the historical trading date the producer replayed: what a
market reader expects on a price chart, so it is the page's default. ``stream_ts`` is when the
producer sent that date (one date per tick interval, all indices of a date at one instant): the
pipeline's own clock, the one to watch when the question is "is data still flowing?".

Along the trading date each (index, date) is drawn once. A looping replay (``PRODUCER_LOOP=true``)
sends the same dates again later in stream time; the latest replay of a date wins, so a line never
folds back on itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TimeAxis:
    key: str
    """The tick column the views run along; also the value of the page's control and URL parameter."""
    label: str
    """What the control offers."""
    title: str
    """The x axis' title (times are UTC everywhere on the page)."""
    label_format: str
    """d3 time format of the axis labels, applied in UTC."""


TRADING_DATE = TimeAxis("date", "trading date", "trading date", "%Y-%m-%d")
STREAM_TIME = TimeAxis("stream_ts", "stream time", "stream time (UTC)", "%H:%M:%S")
AXES = {axis.key: axis for axis in (TRADING_DATE, STREAM_TIME)}
DEFAULT = TRADING_DATE


def along(ticks: pd.DataFrame, axis: TimeAxis) -> pd.DataFrame:
    """The ticks in the order of ``axis`` (then by index), one row per (index, date) along the date.

    Ordered rows matter downstream: "each index's first tick in the window" (% change, rebased to
    100) means first along the axis the viewer sees.
    """
    if axis.key == TRADING_DATE.key:
        ticks = ticks.sort_values("stream_ts", kind="stable").drop_duplicates(["index", "date"], keep="last")
    return ticks.sort_values([axis.key, "index"], kind="stable").reset_index(drop=True)


def span(ticks: pd.DataFrame, axis: TimeAxis) -> str:
    """The window's extent along ``axis`` in words, e.g. ``Trading dates 2021-05-03 to 2021-06-01.``"""
    if ticks.empty:
        return ""
    first, last = ticks[axis.key].min(), ticks[axis.key].max()
    if axis.key == TRADING_DATE.key:
        return f"Trading dates {first:%Y-%m-%d} to {last:%Y-%m-%d}."
    return f"Stream time {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC."
