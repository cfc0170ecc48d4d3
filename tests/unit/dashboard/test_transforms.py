"""The dashboard's pure pieces with plain values: % change, rebased to 100, volume share, formatting."""

from datetime import datetime, timedelta, timezone

import math

import pandas as pd
import pytest

from stockpulse.dashboard import formatting, queries, transforms

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)


def frame(rows):
    """rows: (seconds after T0, index, close, volume, trade_value), in any order."""
    return pd.DataFrame(
        [{"stream_ts": T0 + timedelta(seconds=s), "index": i, "close": c, "volume": v, "trade_value": tv}
         for s, i, c, v, tv in rows]
    )


# Deliberately out of time order: "first" must mean first in time, not first in the frame.
TICKS = frame([
    (2, "A", 121.0, 10, 1210.0),
    (0, "A", 100.0, 30, 3000.0),
    (1, "B", 45.0, 20, 900.0),
    (0, "B", 50.0, 40, 2000.0),
    (1, "A", 110.0, 0, 0.0),
    (2, "B", 40.0, 0, 0.0),
])


def values(result, column, index):
    rows = result[result["index"] == index].sort_values("stream_ts")
    return rows[column].tolist()


def test_pct_change_is_relative_to_each_indexs_first_tick_in_time():
    result = transforms.pct_change_from_first(TICKS)
    assert values(result, "pct_change", "A") == pytest.approx([0.0, 10.0, 21.0])
    assert values(result, "pct_change", "B") == pytest.approx([0.0, -10.0, -20.0])
    assert list(result["stream_ts"]) == sorted(result["stream_ts"])


def test_rebased_to_100():
    result = transforms.rebased_to_100(TICKS)
    assert values(result, "rebased", "A") == pytest.approx([100.0, 110.0, 121.0])
    assert values(result, "rebased", "B") == pytest.approx([100.0, 90.0, 80.0])


# Indices that start at different times (one begins trading later, one skips a holiday), out of order.
STAGGERED = frame([
    (3, "C", 80.0, 1, 80.0),
    (0, "A", 200.0, 1, 200.0),
    (2, "C", 64.0, 1, 64.0),
    (1, "A", 150.0, 1, 150.0),
    (3, "A", 250.0, 1, 250.0),
    (1, "B", 10.0, 1, 10.0),
    (3, "B", 12.5, 1, 12.5),
])
"""A from second 0; B from second 1 and not at 2; C from second 2."""
STAGGERED_EXPECTED = {  # close over each index's own first close in the window, by hand
    "A": [200 / 200, 150 / 200, 250 / 200],
    "B": [10 / 10, 12.5 / 10],
    "C": [64 / 64, 80 / 64],
}


def test_pct_change_and_rebased_use_each_indexs_own_first_tick_when_they_start_apart():
    pct = transforms.pct_change_from_first(STAGGERED)
    rebased = transforms.rebased_to_100(STAGGERED)
    for index, ratios in STAGGERED_EXPECTED.items():
        assert values(pct, "pct_change", index) == pytest.approx([(r - 1) * 100 for r in ratios])
        assert values(rebased, "rebased", index) == pytest.approx([r * 100 for r in ratios])
    assert values(pct, "pct_change", "C") == pytest.approx([0.0, 25.0])  # not relative to A's start


def test_a_zero_first_close_gives_no_number_rather_than_infinity():
    result = transforms.rebased_to_100(frame([(0, "Z", 0.0, 1, 0.0), (1, "Z", 5.0, 1, 5.0)]))
    assert math.isnan(result["rebased"].iloc[1])


def test_volume_share_of_volume_and_trade_value():
    shares = transforms.volume_share(TICKS).set_index(["measure", "index"])["share"]
    assert shares[("volume", "A")] == pytest.approx(40 / 100)
    assert shares[("volume", "B")] == pytest.approx(60 / 100)
    assert shares[("trade value", "A")] == pytest.approx(4210 / 7110)
    assert shares[("trade value", "B")] == pytest.approx(2900 / 7110)


def test_volume_share_is_undefined_when_nothing_traded():
    shares = transforms.volume_share(frame([(0, "A", 1.0, 0, 0.0), (0, "B", 2.0, 0, 0.0)]))
    assert shares["share"].isna().all() and len(shares) == 4


def test_volume_share_of_nothing_is_empty():
    assert transforms.volume_share(TICKS.iloc[0:0]).empty


@pytest.mark.parametrize("bounded, estimate, expected", [
    (0, 0.0, (0, False)),
    (99_999, 5e6, (99_999, False)),
    (100_000, 5_000_123.4, (5_000_123, True)),
    (100_000, 12.0, (100_000, True)),  # a stale estimate never shows less than what was counted
])
def test_row_count_exact_below_the_cap_estimated_above(bounded, estimate, expected):
    assert queries.row_count(bounded, 100_000, estimate) == expected


@pytest.mark.parametrize("seconds, text", [
    (None, "–"), (0.4, "0 s"), (119.9, "119 s"), (120, "2 min"), (7199, "119 min"), (7200, "2 h"),
    (3 * 86_400 + 5, "3 d"),
])
def test_age(seconds, text):
    assert formatting.age(seconds) == text


def test_rows_rate_and_moment():
    assert formatting.rows(1234, False) == "1,234"
    assert formatting.rows(5_000_000, True) == "≈5,000,000"
    assert formatting.rate(0.15) == "0.15"
    later = datetime(2026, 11, 22, 11, 0, 5, 999_000, tzinfo=timezone(timedelta(hours=1)))
    assert formatting.moment(later) == "2026-11-22 10:00:05"
    assert formatting.moment(None) == "–"


def test_indices_without_volume_are_named():
    shares = transforms.volume_share(frame([(0, "NYA", 1.0, 0, 0.0), (0, "A", 2.0, 5, 10.0), (1, "HSI", 3.0, 0, 0.0),
                                            (1, "A", 2.0, 5, 10.0)]))
    assert transforms.without_volume(shares) == ["HSI", "NYA"]
    assert formatting.no_volume(["HSI", "NYA"], ["A", "HSI", "NYA"]) == "HSI, NYA: no volume in this window."


def test_every_index_trading_names_none():
    shares = transforms.volume_share(TICKS)
    assert transforms.without_volume(shares) == []
    assert formatting.no_volume([], ["A", "B"]) is None


def test_nothing_traded_at_all_says_so_once():
    shares = transforms.volume_share(frame([(0, "A", 1.0, 0, 0.0), (0, "B", 2.0, 0, 0.0)]))
    assert transforms.without_volume(shares) == ["A", "B"]
    assert formatting.no_volume(["A", "B"], ["A", "B"]).startswith("No index traded any volume in this window")


@pytest.mark.parametrize("text", ["[click](javascript:alert(1))", "**bold** _it_ `code`", "$x^2$", ":red[alarm]",
                                  "<b>html</b>", "a\\b", "plain text 1.5"])
def test_literal_escapes_every_markdown_mark(text):
    escaped = formatting.literal(text)
    assert escaped.replace("\\", "") == text.replace("\\", "")
    for mark in "[]()*_`$:<>":
        assert all(escaped[i - 1] == "\\" for i, ch in enumerate(escaped) if ch == mark)


def test_shares_too_thin_to_see_are_named():
    shares = transforms.volume_share(frame([(0, "SS", 3000.0, 100, 300_000.0), (0, "HSI", 30_000.0, 2_000_000_000, 6e13),
                                            (0, "NYA", 12_000.0, 0, 0.0)]))
    assert transforms.thin_shares(shares) == ["SS"]  # NYA traded nothing: that is the other note
    assert transforms.without_volume(shares) == ["NYA"]
    assert formatting.thin_share(["SS"], transforms.THIN_SHARE) == (
        "SS: under 0.5% of the volume and of the trade value in this window, too little to see.")
    assert transforms.thin_shares(transforms.volume_share(TICKS)) == []
    assert formatting.thin_share([], transforms.THIN_SHARE) is None
