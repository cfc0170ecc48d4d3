"""The analytics view's pandas over the marts: years, the common start, rebasing, thinning, the table."""

import pandas as pd
import pytest

from stockpulse.dashboard import analytics


def daily(rows):
    """rows: (index, date, close, rebased_close, volatility_20d)."""
    frame = pd.DataFrame(rows, columns=["index", "date", "close", "rebased_close", "volatility_20d"])
    frame["date"] = pd.to_datetime(frame["date"]).dt.tz_localize("UTC")
    frame["close_usd"] = frame["close"] / 2
    return frame


DAILY = daily([
    ("NYA", "1999-12-31", 600.0, 100.0, None),
    ("NYA", "2000-01-03", 660.0, 110.0, 0.010),
    ("NYA", "2001-01-02", 720.0, 120.0, 0.020),
    ("HSI", "2000-01-04", 50.0, 100.0, None),
    ("HSI", "2001-01-02", 40.0, 80.0, 0.030),
    ("HSI", "2002-01-02", 60.0, 120.0, 0.025),
])


def test_years_and_the_common_start():
    assert analytics.years(DAILY) == (1999, 2002)
    assert analytics.common_start_year(DAILY, ["NYA", "HSI"]) == 2000  # HSI starts in 2000
    assert analytics.common_start_year(DAILY, ["NYA"]) == 1999
    assert analytics.common_start_year(DAILY, ["nothing"]) == 1999


def test_rebased_from_each_indexs_first_date_in_the_window():
    chosen = analytics.rebased_in_window(analytics.window(DAILY, ["NYA", "HSI"], 2000, 2002))
    by_index = {i: rows["rebased"].tolist() for i, rows in chosen.groupby("index")}
    assert by_index["NYA"] == pytest.approx([100.0, 120 / 110 * 100])  # anchored at 2000-01-03, not 1999
    assert by_index["HSI"] == pytest.approx([100.0, 80.0, 120.0])
    assert by_index["NYA"] == pytest.approx([c / 660 * 100 for c in (660, 720)])  # the same as rebasing close


def test_window_keeps_the_chosen_indices_and_years():
    chosen = analytics.window(DAILY, ["HSI"], 2001, 2001)
    assert chosen["date"].dt.strftime("%Y-%m-%d").tolist() == ["2001-01-02"]


def test_thin_keeps_at_most_max_points_per_index_with_first_and_last():
    long = daily([("A", d, float(k), float(k), None) for k, d in
                  enumerate(pd.date_range("2000-01-01", periods=1000).strftime("%Y-%m-%d"))]
                 + [("B", "2000-01-01", 1.0, 1.0, None)])
    thinned = analytics.thin(long, max_points=50)
    a = thinned[thinned["index"] == "A"]["close"].tolist()
    assert len(a) == 50 and a[0] == 0.0 and a[-1] == 999.0 and a == sorted(a)
    assert thinned[thinned["index"] == "B"]["close"].tolist() == [1.0]
    assert analytics.thin(long.iloc[0:0]).empty


def test_yearly_share_keeps_the_marts_shares():
    shares = pd.DataFrame({"index": ["HSI", "NYA", "HSI", "NYA"], "year": [2000, 2000, 2001, 2001],
                           "trade_value_usd": [1.0, 3.0, 1.0, 1.0], "trade_value_usd_share": [0.25, 0.75, 0.5, 0.5]})
    chosen = analytics.yearly_share(shares, ["HSI"], 2001, 2001)
    assert chosen.values.tolist() == [["HSI", 2001, 1.0, 0.5]]


def test_latest_by_index_from_dim_index():
    indices = pd.DataFrame({"index": ["HSI", "NYA", "N225"], "region": ["Hong Kong", "United States", "Japan"],
                            "exchange": ["Hong Kong Stock Exchange", "New York Stock Exchange", "Tokyo Stock Exchange"],
                            "currency": ["HKD", "USD", "JPY"]})
    table = analytics.latest_by_index(DAILY, indices).set_index("index")
    assert table.loc["HSI", "latest date"] == "2002-01-02"
    assert table.loc["HSI", "close"] == "60.00" and table.loc["HSI", "close (USD)"] == "30.00"
    assert table.loc["HSI", "volatility (20 d)"] == "2.50%"
    assert table.loc["N225", "latest date"] == "–"  # in dim_index, no trading days in the marts
