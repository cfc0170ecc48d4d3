"""The Altair views: typed encodings from the tick contract, tooltips, one colour per index."""

from datetime import datetime, timezone

import pandas as pd
import pytest

from stockpulse.dashboard import charts, transforms
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


def test_line_views_plot_over_stream_time():
    spec = main_layer(all_views()["close"].to_dict())
    assert (spec["encoding"]["x"]["field"], spec["encoding"]["x"]["type"]) == ("stream_ts", "temporal")


def tooltip(spec: dict, field: str) -> dict:
    return next(t for t in spec["encoding"]["tooltip"] if t["field"] == field)


@pytest.mark.parametrize("name", ["close", "pct", "rebased"])
def test_times_read_in_utc_whatever_the_viewers_time_zone(name):
    spec = main_layer(all_views()[name].to_dict())
    assert spec["encoding"]["x"]["scale"]["type"] == "utc"  # axis labels via utcFormat
    for field, fmt in (("stream_ts", "%Y-%m-%d %H:%M:%S"), ("date", "%Y-%m-%d")):
        # a custom format type naming Vega's utcFormat; "utc" would call Vega's utc() constructor
        assert (tooltip(spec, field)["formatType"], tooltip(spec, field)["format"]) == ("utcFormat", fmt)

