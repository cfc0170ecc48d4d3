"""The analytics view: the dbt marts over the whole lake's history, not the latest ticks.

Rebased performance and rolling volatility per chosen index, each index's yearly share of trade
value in US dollars, and a table of where each index trades and where it stands. Before dbt has
built the marts file the view says how to build it; a file it cannot read is one line, and the
view tries again at its next refresh.
"""

from __future__ import annotations

import time

import streamlit as st

from stockpulse.dashboard import analytics, charts, formatting, marts
from stockpulse.dashboard.settings import DashboardSettings

REFRESH_SECONDS = 30
"""dbt rebuilds the marts minutes apart; a refresh only checks the file's identity (see ``marts``)."""


def show(settings: DashboardSettings) -> None:
    try:
        found = marts.load(settings.analytics_db)
    except marts.MartsUnavailable as exc:
        st.warning(f"{exc}")
        return
    if found is None:
        st.info(marts.NOT_BUILT)
        st.caption(f"Looked for `{settings.analytics_db}` (set ANALYTICS_DUCKDB to read another file).")
        return
    if found.daily.empty:
        st.info(f"The marts in `{settings.analytics_db}` hold no trading days yet: the lake had no compacted "
                f"partitions when dbt last ran. Run `{marts.BUILD_COMMAND}` after the next compaction.")
        return
    st.caption(f"dbt marts in `{settings.analytics_db}`, built "
               f"{formatting.age(max(0.0, time.time() - found.built_at))} ago.")

    offered = sorted(found.daily["index"].unique())  # dim_index lists every index known, traded or not
    left, right = st.columns([2, 1])
    picked = left.multiselect("Indices", offered, default=offered, placeholder="All indices",
                              help="None picked means all.")
    chosen = picked or offered
    first, last = analytics.years(found.daily)
    start = analytics.common_start_year(found.daily, chosen)
    if first < last:
        start, last = right.slider("Years", first, last, (start, last),
                                   help="Starts where every chosen index has data, so the lines start together.")
    daily = analytics.window(found.daily, chosen, start, last)

    perf, vol = st.columns(2)
    with perf:
        st.subheader("Performance, rebased to 100")
        st.altair_chart(charts.performance_chart(analytics.thin(analytics.rebased_in_window(daily)), offered),
                        width="stretch")
    with vol:
        st.subheader("Volatility, 20 trading days (annualised)")
        st.altair_chart(charts.volatility_chart(analytics.thin(daily.dropna(subset=["volatility_20d"])), offered),
                        width="stretch")
    share, table = st.columns(2)
    with share:
        st.subheader("Yearly share of trade value (USD)")
        st.altair_chart(charts.yearly_share_chart(analytics.yearly_share(found.yearly_share, chosen, start, last),
                                                  offered), width="stretch")
    with table:
        st.subheader("Indices")
        st.table(analytics.latest_by_index(found.daily, found.indices[found.indices["index"].isin(chosen)]),
                 hide_index=True)
