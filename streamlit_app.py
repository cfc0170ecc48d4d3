"""StockPulse live dashboard: the latest ticks in PostgreSQL's ``ticks_raw``, the pipeline's health
and the dbt marts, refreshed every few seconds.

Usage: streamlit run streamlit_app.py        ('make up' starts it on http://127.0.0.1:8501)

You should see three tabs (each also reachable by URL: ?view=Pipeline, ?view=Analytics):

- Live prices: a header of four metrics (rows in ticks_raw, ticks per second over the last minute,
  time since the last tick landed, the latest stream_ts) and four charts over the latest N ticks (a
  tick is one trading date: every index of that date shares one stream_ts): close prices, % change
  from each index's first tick in the window, rebased to 100, and each index's share of volume and
  trade value. They run along the trading date or the stream time, as the sidebar says.
- Pipeline: dead letters, each sink's freshness, the consumer's lag per partition, and the latest
  run of the lake compaction and of the dbt build.
- Analytics: rebased performance, rolling volatility and yearly trade-value shares from the dbt
  marts (ANALYTICS_DUCKDB), or how to build them.

Times are UTC. Before the first tick lands the page says it is waiting (and fills the index picker
once ticks arrive); when PostgreSQL is down it says which URL failed, in one line, and keeps
retrying. Settings: the DASHBOARD_* variables, and the pipeline's own for the broker, checkpoints,
lake and marts.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.config import redact_url  # noqa: E402
from stockpulse.dashboard import (analytics_view, charts, data, formatting, pipeline_view, queries,  # noqa: E402
                                  time_axis, transforms)
from stockpulse.dashboard.settings import MAX_TICKS, DashboardSettings  # noqa: E402
from stockpulse.errors import ConfigError  # noqa: E402
from stockpulse.ops import checkpoints  # noqa: E402  (the lag's checkpoint reader: see dashboard/lag.py)

logs.configure()
st.set_page_config(page_title="StockPulse live", page_icon="📈", layout="wide")

try:
    settings = DashboardSettings.from_env()
except ConfigError as exc:
    st.error(f"The dashboard cannot start: {exc}. Fix the variable and reload the page.")
    st.stop()

URL = settings.database_url

st.title("StockPulse live")
st.caption(f"Reading `{redact_url(URL)}` · refreshing every {settings.refresh_seconds} s")

with st.sidebar:
    st.header("Window")
    latest_n = st.number_input("Latest ticks (N)", min_value=10, max_value=MAX_TICKS,
                               value=settings.default_ticks, step=100,
                               help="A tick is one trading date: every index of that date shares one stream_ts.")
    options = data.index_options(URL)
    picked = st.multiselect("Indices", options, placeholder="All indices",
                            help="Indices seen in the latest rows; none picked means all.")
    axis_key = st.radio("Time axis", list(time_axis.AXES), index=list(time_axis.AXES).index(time_axis.DEFAULT.key),
                        format_func=lambda key: time_axis.AXES[key].label, horizontal=True,
                        key="axis", bind="query-params",
                        help="Trading date: the replayed market date, as a market reader expects. Stream time: "
                             "when the producer sent each date, to watch the pipeline itself.")
axis = time_axis.AXES[axis_key]

live_tab, pipeline_tab, analytics_tab = st.tabs(["Live prices", "Pipeline", "Analytics"], key="view",
                                                bind="query-params")


def header(m: queries.Metrics) -> None:
    rows, rate, since, latest = st.columns([1, 1, 1, 1.7])  # the timestamp needs the room
    rows.metric("Rows in ticks_raw", formatting.rows(m.rows, m.rows_estimated),
                help=f"Exact up to {queries.EXACT_COUNT_CAP:,} rows, PostgreSQL's estimate above.")
    rate.metric("Ticks/s (last minute)", formatting.rate(m.ticks_per_second),
                help="Distinct stream_ts (one per trading date) among rows that landed in the last 60 s, "
                     "divided by 60.")
    since.metric("Since last tick landed", formatting.age(m.seconds_since_last_tick))
    latest.metric("Latest stream_ts (UTC)", formatting.moment(m.latest_stream_ts))


def views(ticks, axis: time_axis.TimeAxis) -> None:
    indices = sorted(ticks["index"].unique())
    shares = transforms.volume_share(ticks)
    idle = transforms.without_volume(shares)
    thin = transforms.thin_shares(shares)
    points = time_axis.along(ticks, axis)
    left, right = st.columns(2)
    with left:
        st.subheader("Close")
        st.altair_chart(charts.close_chart(points, indices, axis), width="stretch")
        st.subheader("Rebased to 100")
        st.altair_chart(charts.rebased_chart(transforms.rebased_to_100(points, axis.key), indices, axis),
                        width="stretch")
    with right:
        st.subheader("% change from the first tick")
        st.altair_chart(charts.pct_change_chart(transforms.pct_change_from_first(points, axis.key), indices, axis),
                        width="stretch")
        st.subheader("Share of volume and trade value")
        if len(idle) < len(indices):
            st.altair_chart(charts.volume_share_chart(shares, indices, idle + thin), width="stretch")
        for note in (formatting.no_volume(idle, indices), formatting.thin_share(thin, transforms.THIN_SHARE)):
            if note:
                st.caption(note)


def fill_the_picker(latest_stream_ts) -> None:
    """Ticks have landed but the sidebar was built with no indices to offer (the page opened on an
    empty table or while PostgreSQL was down): forget the cached options and rebuild the whole page.
    At most once per latest tick, so a picker whose own query keeps failing cannot make every
    refresh a full rerun."""
    if st.session_state.get("picker_filled_for") == latest_stream_ts:
        return
    st.session_state["picker_filled_for"] = latest_stream_ts
    data.forget_index_options()
    st.rerun(scope="app")


@st.fragment(run_every=settings.refresh_seconds)
def live(latest_n: int, picked: tuple[str, ...], picker_empty: bool, axis: time_axis.TimeAxis) -> None:
    try:
        snapshot = data.live(URL, latest_n, picked)
    except data.DatabaseUnavailable as exc:
        st.warning(f"{exc} — retrying every {settings.refresh_seconds} s.")
        return
    m, ticks = snapshot.metrics, snapshot.ticks
    if picker_empty and not ticks.empty:
        fill_the_picker(m.latest_stream_ts)
    header(m)
    if ticks.empty:
        st.info("Waiting for the first ticks… start the pipeline with `make up` "
                "(or the producer and consumer by hand); this page refreshes by itself.")
        return
    st.caption(f"Latest {ticks['stream_ts'].nunique():,} ticks ({len(ticks):,} rows) "
               f"of {', '.join(picked) if picked else 'all indices'}. {time_axis.span(ticks, axis)}")
    views(ticks, axis)


@st.fragment(run_every=settings.refresh_seconds)
def pipeline() -> None:
    pipeline_view.show(settings, checkpoints.read_all, checkpoints.partition_lag)


@st.fragment(run_every=analytics_view.REFRESH_SECONDS)
def analytics() -> None:
    analytics_view.show(settings)


# Only the open tab runs (the tabs track their state), so a hidden view costs nothing.
if live_tab.open:
    with live_tab:
        live(int(latest_n), tuple(picked), not options, axis)
if pipeline_tab.open:
    with pipeline_tab:
        pipeline()
if analytics_tab.open:
    with analytics_tab:
        analytics()
