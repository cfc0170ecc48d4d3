"""The Altair views: typed encodings from the tick contract, tooltips, one colour per index, the
chosen time axis, and the analytics views over the marts."""

from datetime import datetime, timezone

import pandas as pd
import pytest

from stockpulse.dashboard import charts, time_axis, transforms
from stockpulse.schema import FIELD_BY_NAME

TICKS = pd.DataFrame({
    "stream_ts": pd.to_datetime([datetime(2026, 11, 22, 10, 0, s, tzinfo=timezone.utc) for s in (0, 0, 1, 1)]),
    "date": pd.to_datetime(["2021-06-01"] * 4, utc=True),  # as queries.latest_ticks returns it
    "index": ["HSI", "NYA", "HSI", "NYA"],
    "close": [100.0, 200.0, 101.0, 198.0],
    "volume": [10.0, 20.0, 30.0, 40.0],
    "trade_value": [1000.0, 4000.0, 3030.0, 7920.0],
})
INDICES = ["HSI", "NYA"]


def all_views():
    return {
        "close": charts.close_chart(TICKS, INDICES),
        "pct": charts.pct_change_chart(transforms.pct_change_from_first(TICKS), INDICES),
        "rebased": charts.rebased_chart(transforms.rebased_to_100(TICKS), INDICES),
        "share": charts.volume_share_chart(transforms.volume_share(TICKS), INDICES),
    }


def main_layer(spec: dict) -> dict:
    return spec["layer"][0] if "layer" in spec else spec


def test_encoding_types_come_from_the_contract():
    assert charts.shorthand("stream_ts") == "stream_ts:T"
    assert charts.shorthand("date") == "date:T"
    assert charts.shorthand("index") == "index:N"
    assert charts.shorthand("close") == "close:Q"
    assert charts.shorthand("volume") == "volume:Q"
    assert charts.encoding_type(FIELD_BY_NAME["kafka_topic"]) == "N"


@pytest.mark.parametrize("name", ["close", "pct", "rebased", "share"])
def test_every_view_is_typed_has_tooltips_and_shares_the_colour_domain(name):
    spec = main_layer(all_views()[name].to_dict())
    encoding = spec["encoding"]
    assert all(channel.get("type") for channel in (encoding["x"], encoding["y"], encoding["color"]))
    assert len(encoding["tooltip"]) >= 4
    assert encoding["color"]["scale"]["domain"] == INDICES


@pytest.mark.parametrize("name, field, baseline", [("pct", "pct_change", 0.0), ("rebased", "rebased", 100.0)])
def test_relative_views_draw_their_baseline(name, field, baseline):
    spec = all_views()[name].to_dict()
    assert main_layer(spec)["encoding"]["y"]["field"] == field
    datasets = spec["datasets"].values()
    assert [{"baseline": baseline}] in list(datasets)


@pytest.mark.parametrize("axis, field, title, fmt", [
    (time_axis.TRADING_DATE, "date", "trading date", "%Y-%m-%d"),
    (time_axis.STREAM_TIME, "stream_ts", "stream time (UTC)", "%H:%M:%S"),
])
def test_line_views_run_along_the_chosen_time_axis(axis, field, title, fmt):
    for chart in (charts.close_chart(TICKS, INDICES, axis),
                  charts.pct_change_chart(transforms.pct_change_from_first(TICKS, axis.key), INDICES, axis),
                  charts.rebased_chart(transforms.rebased_to_100(TICKS, axis.key), INDICES, axis)):
        x = main_layer(chart.to_dict())["encoding"]["x"]
        assert (x["field"], x["type"], x["title"], x["axis"]["format"]) == (field, "temporal", title, fmt)
        assert x["scale"]["type"] == "utc"


def test_the_line_views_default_to_the_trading_date():
    assert main_layer(all_views()["close"].to_dict())["encoding"]["x"]["field"] == "date"


def test_the_share_view_lists_no_idle_index_in_its_legend_but_keeps_every_colour():
    idle = charts.volume_share_chart(transforms.volume_share(TICKS), INDICES, idle=["NYA"]).to_dict()
    color = idle["encoding"]["color"]
    assert color["legend"]["values"] == ["HSI"]
    assert color["scale"]["domain"] == INDICES  # HSI keeps the colour it has in the other views
    busy = charts.volume_share_chart(transforms.volume_share(TICKS), INDICES).to_dict()
    assert "values" not in busy["encoding"]["color"]["legend"]


def tooltip(spec: dict, field: str) -> dict:
    return next(t for t in spec["encoding"]["tooltip"] if t["field"] == field)


@pytest.mark.parametrize("name", ["close", "pct", "rebased"])
def test_times_read_in_utc_whatever_the_viewers_time_zone(name):
    spec = main_layer(all_views()[name].to_dict())
    assert spec["encoding"]["x"]["scale"]["type"] == "utc"  # axis labels via utcFormat
    for field, fmt in (("stream_ts", "%Y-%m-%d %H:%M:%S"), ("date", "%Y-%m-%d")):
        # a custom format type naming Vega's utcFormat; "utc" would call Vega's utc() constructor
        assert (tooltip(spec, field)["formatType"], tooltip(spec, field)["format"]) == ("utcFormat", fmt)



DAILY = pd.DataFrame({
    "index": ["HSI", "HSI", "NYA", "NYA"],
    "date": pd.to_datetime(["2020-01-02", "2020-01-03"] * 2, utc=True),
    "close": [100.0, 110.0, 50.0, 45.0],
    "rebased": [100.0, 110.0, 100.0, 90.0],
    "volatility_20d": [0.01, 0.012, 0.02, 0.018],
})
YEARLY = pd.DataFrame({"index": ["HSI", "NYA"], "year": [2020, 2020], "trade_value_usd": [1e9, 3e9],
                       "trade_value_usd_share": [0.25, 0.75]})


@pytest.mark.parametrize("chart, y", [
    (charts.performance_chart(DAILY, INDICES), "rebased"),
    (charts.volatility_chart(DAILY, INDICES), "volatility_20d"),
    (charts.yearly_share_chart(YEARLY, INDICES), "trade_value_usd_share"),
])
def test_analytics_views_are_typed_with_tooltips_and_the_same_colours(chart, y):
    spec = chart.to_dict()
    encoding = spec["encoding"]
    assert encoding["y"]["field"] == y and all(encoding[c].get("type") for c in ("x", "y", "color"))
    assert encoding["color"]["scale"]["domain"] == INDICES
    assert len(encoding["tooltip"]) == 4


def test_performance_is_on_a_log_scale_and_dates_read_in_utc():
    encoding = charts.performance_chart(DAILY, INDICES).to_dict()["encoding"]
    assert encoding["y"]["scale"]["type"] == "log"
    assert encoding["x"]["scale"]["type"] == "utc"
    assert tooltip({"encoding": encoding}, "date")["formatType"] == "utcFormat"


def test_yearly_shares_are_stacked_but_not_normalised():
    """The shares are of all indices: two chosen ones that traded 60 % must not fill the bar."""
    y = charts.yearly_share_chart(YEARLY, INDICES).to_dict()["encoding"]["y"]
    assert y["stack"] == "zero" and y["scale"]["domain"] == [0, 1]
