"""The Altair views: four over the latest ticks, three over the dbt marts. Encodings are typed (from
the tick contract where the data is ticks) and every mark has a tooltip.

No colours are hard-coded except the categorical scheme, which reads on light and dark
backgrounds; Streamlit's own theme (``theme="streamlit"``, the default of ``st.altair_chart``)
supplies text and grid colours, so the charts follow the viewer's light or dark mode. Each index
keeps one colour across all views because every chart gets the same colour domain, and clicking a
legend entry highlights that index.

Times read in UTC, as their labels say, whatever the viewer's time zone: the time axes (stream
time or trading date, :mod:`stockpulse.dashboard.time_axis`) use a UTC scale, and time tooltips are
formatted with Vega's ``utcFormat``. The data carries both
``stream_ts`` and the trading ``date`` as UTC instants (a date as UTC midnight), so the date reads
the same on either side of Greenwich. A naive column would not: Streamlit shifts naive times into
the viewer's zone before Vega sees them.
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import pandas as pd

from stockpulse.dashboard.time_axis import DEFAULT as DEFAULT_AXIS
from stockpulse.dashboard.time_axis import TimeAxis
from stockpulse.schema import FIELD_BY_NAME, Field

HEIGHT = 280
COLOR_SCHEME = "tableau10"

_VEGA_TYPE = {"TIMESTAMPTZ": "T", "DATE": "T", "TEXT": "N"}

UTC_FORMAT_TYPE = "utcFormat"
"""A Vega-Lite custom format type naming Vega's built-in ``utcFormat`` expression. (``"utc"`` is no
built-in format type: Vega-Lite would call Vega's ``utc()`` date constructor and show nothing.)"""


def encoding_type(field: Field) -> str:
    """Vega-Lite's measurement type for a contract field: temporal, nominal or quantitative."""
    return _VEGA_TYPE.get(field.sql_type, "Q")


def shorthand(name: str) -> str:
    """``"close:Q"`` style shorthand for a contract field."""
    return f"{name}:{encoding_type(FIELD_BY_NAME[name])}"


def _index_color(indices: Sequence[str], listed: Sequence[str] | None = None) -> alt.Color:
    """One colour per index, the same in every view; ``listed`` limits the legend's entries (not
    the colours) to the indices the view actually draws."""
    legend = alt.Legend(orient="bottom") if listed is None else alt.Legend(orient="bottom", values=sorted(listed))
    return alt.Color(shorthand("index"), title="index",
                     scale=alt.Scale(domain=sorted(indices), scheme=COLOR_SCHEME), legend=legend)


def _tick_tooltip(value: str, title: str, fmt: str) -> list[alt.Tooltip]:
    return [
        alt.Tooltip(shorthand("index"), title="index"),
        alt.Tooltip(shorthand("stream_ts"), title="stream time (UTC)", format="%Y-%m-%d %H:%M:%S",
                    formatType=UTC_FORMAT_TYPE),
        alt.Tooltip(shorthand("date"), title="trading date", format="%Y-%m-%d", formatType=UTC_FORMAT_TYPE),
        alt.Tooltip(shorthand("close"), title="close", format=",.2f"),
        alt.Tooltip(f"{value}:Q", title=title, format=fmt),
    ]


def _line(ticks: pd.DataFrame, value: str, title: str, fmt: str, indices: Sequence[str], axis: TimeAxis,
          baseline: float | None = None) -> alt.LayerChart | alt.Chart:
    """Lines per index along ``axis`` (stream time or trading date), with an optional reference rule."""
    highlight = alt.selection_point(fields=["index"], bind="legend")
    lines = alt.Chart(ticks).mark_line(point=alt.OverlayMarkDef(size=12, filled=True)).encode(
        x=alt.X(shorthand(axis.key), title=axis.title, scale=alt.Scale(type="utc"),
                axis=alt.Axis(format=axis.label_format, labelOverlap=True)),
        y=alt.Y(f"{value}:Q", title=title, scale=alt.Scale(zero=False)),
        color=_index_color(indices),
        opacity=alt.condition(highlight, alt.value(1.0), alt.value(0.15)),
        tooltip=_tick_tooltip(value, title, fmt),
    ).add_params(highlight)
    if baseline is None:
        return lines.properties(height=HEIGHT)
    rule = alt.Chart(pd.DataFrame({"baseline": [baseline]})).mark_rule(strokeDash=[4, 4], opacity=0.5).encode(
        y="baseline:Q")
    return alt.layer(lines, rule).properties(height=HEIGHT)


def close_chart(ticks: pd.DataFrame, indices: Sequence[str], axis: TimeAxis = DEFAULT_AXIS) -> alt.Chart:
    """View 1: raw close prices."""
    return _line(ticks, "close", "close", ",.2f", indices, axis)


def pct_change_chart(changes: pd.DataFrame, indices: Sequence[str], axis: TimeAxis = DEFAULT_AXIS) -> alt.LayerChart:
    """View 2: % change from each index's first tick in the window (rule at 0)."""
    return _line(changes, "pct_change", "% change from first tick", "+.3f", indices, axis, baseline=0.0)


def rebased_chart(rebased: pd.DataFrame, indices: Sequence[str], axis: TimeAxis = DEFAULT_AXIS) -> alt.LayerChart:
    """View 3: close rebased to 100 at each index's first tick (rule at 100)."""
    return _line(rebased, "rebased", "rebased (first tick = 100)", ",.3f", indices, axis, baseline=100.0)


def volume_share_chart(shares: pd.DataFrame, indices: Sequence[str], idle: Sequence[str] = ()) -> alt.Chart:
    """View 4: each index's share of volume and of trade value, one normalised bar per measure.

    ``idle`` indices traded nothing in the window (or too little to see): they have no visible bar,
    so they get no legend entry either (the page names them in a caption); the colours stay those
    of every other view.
    """
    return alt.Chart(shares).mark_bar().encode(
        x=alt.X("share:Q", title="share of the window", stack="normalize", axis=alt.Axis(format="%")),
        y=alt.Y("measure:N", title=None, sort=["volume", "trade value"]),
        color=_index_color(indices, listed=[i for i in indices if i not in set(idle)] if idle else None),
        tooltip=[
            alt.Tooltip(shorthand("index"), title="index"),
            alt.Tooltip("measure:N", title="measure"),
            alt.Tooltip("total:Q", title="total", format=",.0f"),
            alt.Tooltip("share:Q", title="share", format=".1%"),
        ],
    ).properties(height=HEIGHT)


def _date_x(title: str = "trading date") -> alt.X:
    return alt.X("date:T", title=title, scale=alt.Scale(type="utc"), axis=alt.Axis(labelOverlap=True))


def _mart_tooltip(value: str, title: str, fmt: str) -> list[alt.Tooltip]:
    return [
        alt.Tooltip("index:N", title="index"),
        alt.Tooltip("date:T", title="trading date", format="%Y-%m-%d", formatType=UTC_FORMAT_TYPE),
        alt.Tooltip("close:Q", title="close", format=",.2f"),
        alt.Tooltip(f"{value}:Q", title=title, format=fmt),
    ]


def performance_chart(daily: pd.DataFrame, indices: Sequence[str]) -> alt.Chart:
    """Analytics 1: each index rebased to 100 at its first trading date in the chosen years, on a
    log scale, so equal growth rates look alike whether an index stands at 100 or 10,000."""
    highlight = alt.selection_point(fields=["index"], bind="legend")
    return alt.Chart(daily).mark_line().encode(
        x=_date_x(),
        y=alt.Y("rebased:Q", title="rebased (first date = 100, log scale)", scale=alt.Scale(type="log")),
        color=_index_color(indices),
        opacity=alt.condition(highlight, alt.value(1.0), alt.value(0.15)),
        tooltip=_mart_tooltip("rebased", "rebased", ",.1f"),
    ).add_params(highlight).properties(height=HEIGHT)


def volatility_chart(daily: pd.DataFrame, indices: Sequence[str]) -> alt.Chart:
    """Analytics 2: the marts' rolling volatility of daily returns over 20 trading days, annualised."""
    highlight = alt.selection_point(fields=["index"], bind="legend")
    return alt.Chart(daily).mark_line(strokeWidth=1).encode(
        x=_date_x(),
        y=alt.Y("volatility_20d:Q", title="volatility (20 d, annualised)", axis=alt.Axis(format="%")),
        color=_index_color(indices),
        opacity=alt.condition(highlight, alt.value(1.0), alt.value(0.15)),
        tooltip=_mart_tooltip("volatility_20d", "volatility (20 d)", ".2%"),
    ).add_params(highlight).properties(height=HEIGHT)


def yearly_share_chart(shares: pd.DataFrame, indices: Sequence[str]) -> alt.Chart:
    """Analytics 3: each index's share of the year's trade value in US dollars, one bar per year,
    stacked but not normalised: the shares are of all indices, so the chosen ones may not fill 100 %."""
    return alt.Chart(shares).mark_bar().encode(
        x=alt.X("year:O", title="year", axis=alt.Axis(labelOverlap=True, labelAngle=0)),
        y=alt.Y("trade_value_usd_share:Q", title="share of the year's trade value (USD)", stack="zero",
                scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=_index_color(indices),
        order=alt.Order("index:N"),
        tooltip=[
            alt.Tooltip("index:N", title="index"),
            alt.Tooltip("year:O", title="year"),
            alt.Tooltip("trade_value_usd:Q", title="trade value (USD)", format=",.0f"),
            alt.Tooltip("trade_value_usd_share:Q", title="share", format=".1%"),
        ],
    ).properties(height=HEIGHT)
