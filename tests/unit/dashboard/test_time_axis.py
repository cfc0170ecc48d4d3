"""The price views' time axis: trading date (the default) or stream time, with plain frames."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from stockpulse.dashboard import time_axis, transforms
from stockpulse.dashboard.time_axis import STREAM_TIME, TRADING_DATE

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")  # as queries.latest_ticks returns a date: UTC midnight


def frame(rows):
    """rows: (seconds after T0, trading date, index, close)."""
    return pd.DataFrame([{"stream_ts": T0 + timedelta(seconds=s), "date": day(d), "index": i, "close": c,
                          "volume": 1.0, "trade_value": c} for s, d, i, c in rows])


# A looping replay: seconds 0-2 send 2021-06-01..03, then the file starts again at second 3 with
# 2021-06-01 (a new close, as if corrected). Deliberately out of order.
LOOPED = frame([
    (3, "2021-06-01", "A", 104.0),
    (0, "2021-06-01", "A", 100.0),
    (2, "2021-06-03", "A", 130.0),
    (1, "2021-06-02", "A", 120.0),
    (1, "2021-06-02", "B", 20.0),
    (0, "2021-06-01", "B", 10.0),
])


def test_the_trading_date_is_the_default():
    assert time_axis.DEFAULT is TRADING_DATE
    assert list(time_axis.AXES) == ["date", "stream_ts"]


def test_along_stream_time_keeps_every_tick_in_stream_order():
    points = time_axis.along(LOOPED, STREAM_TIME)
    assert len(points) == len(LOOPED)
    assert list(points["stream_ts"]) == sorted(LOOPED["stream_ts"])
    assert list(points["index"][:2]) == ["A", "B"]  # ties by index


def test_along_the_trading_date_each_date_once_the_latest_replay_wins():
    points = time_axis.along(LOOPED, TRADING_DATE)
    a = points[points["index"] == "A"]
    assert list(a["date"]) == [day("2021-06-01"), day("2021-06-02"), day("2021-06-03")]
    assert list(a["close"]) == [104.0, 120.0, 130.0]  # 2021-06-01 from its replay at second 3
    assert list(points["date"]) == sorted(points["date"])


def test_first_tick_means_first_along_the_axis_the_viewer_sees():
    """Along the date, A's first point is 2021-06-01 (close 104); along stream time it is second 0 (100)."""
    by_date = transforms.rebased_to_100(time_axis.along(LOOPED, TRADING_DATE), "date")
    assert by_date[by_date["index"] == "A"]["rebased"].tolist() == pytest.approx([100.0, 120 / 104 * 100,
                                                                                  130 / 104 * 100])
    by_stream = transforms.pct_change_from_first(time_axis.along(LOOPED, STREAM_TIME), "stream_ts")
    assert by_stream[by_stream["index"] == "A"]["pct_change"].tolist() == pytest.approx([0.0, 20.0, 30.0, 4.0])


def test_span_in_words():
    assert time_axis.span(LOOPED, TRADING_DATE) == "Trading dates 2021-06-01 to 2021-06-03."
    assert time_axis.span(LOOPED, STREAM_TIME) == "Stream time 2026-11-22 10:00:00 to 2026-11-22 10:00:03 UTC."
    assert time_axis.span(LOOPED.iloc[0:0], TRADING_DATE) == ""
