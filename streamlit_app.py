"""StockPulse live dashboard: the latest ticks in PostgreSQL's ``ticks_raw``, refreshed every few seconds.

Usage: streamlit run streamlit_app.py        ('make up' starts it on http://127.0.0.1:8501)

You should see a header of four metrics (rows in ticks_raw, ticks per second over the last minute,
time since the last tick landed, the latest stream_ts) and four charts over the latest N ticks (a
tick is one trading date: every index of that date shares one stream_ts): close prices, % change
from each index's first tick in the window, rebased to 100, and each index's share of volume and
trade value. Times are UTC. Before the first tick lands the page says it is waiting (and fills the
index picker once ticks arrive); when PostgreSQL is down it says which URL failed, in one line, and
keeps retrying. Settings: the DASHBOARD_* variables.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.config import redact_url  # noqa: E402
from stockpulse.dashboard import charts, data, formatting, queries, transforms  # noqa: E402
from stockpulse.dashboard.settings import MAX_TICKS, DashboardSettings  # noqa: E402
from stockpulse.errors import ConfigError  # noqa: E402

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


def header(m: queries.Metrics) -> None:
    rows, rate, since, latest = st.columns([1, 1, 1, 1.7])  # the timestamp needs the room
    rows.metric("Rows in ticks_raw", formatting.rows(m.rows, m.rows_estimated),
                help=f"Exact up to {queries.EXACT_COUNT_CAP:,} rows, PostgreSQL's estimate above.")
    rate.metric("Ticks/s (last minute)", formatting.rate(m.ticks_per_second),
                help="Distinct stream_ts (one per trading date) among rows that landed in the last 60 s, "
                     "divided by 60.")
    since.metric("Since last tick landed", formatting.age(m.seconds_since_last_tick))
    latest.metric("Latest stream_ts (UTC)", formatting.moment(m.latest_stream_ts))


def views(ticks) -> None:
    indices = sorted(ticks["index"].unique())
    shares = transforms.volume_share(ticks)
    left, right = st.columns(2)
    with left:
        st.subheader("Close")
        st.altair_chart(charts.close_chart(ticks, indices), width="stretch")
        st.subheader("Rebased to 100")
        st.altair_chart(charts.rebased_chart(transforms.rebased_to_100(ticks), indices), width="stretch")
    with right:
        st.subheader("% change from the first tick")
        st.altair_chart(charts.pct_change_chart(transforms.pct_change_from_first(ticks), indices), width="stretch")
        st.subheader("Share of volume and trade value")
        st.altair_chart(charts.volume_share_chart(shares, indices), width="stretch")
        if shares["share"].isna().any():
            st.caption("No volume traded in this window for some measures (early history has volume 0).")


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
def live(latest_n: int, picked: tuple[str, ...], picker_empty: bool) -> None:
    try:
        m = data.metrics(URL)
        ticks = data.latest_ticks(URL, latest_n, picked)
    except data.DatabaseUnavailable as exc:
        st.warning(f"{exc} — retrying every {settings.refresh_seconds} s.")
        return
    if picker_empty and not ticks.empty:
        fill_the_picker(m.latest_stream_ts)
    header(m)
    if ticks.empty:
        st.info("Waiting for the first ticks… start the pipeline with `make up` "
                "(or the producer and consumer by hand); this page refreshes by itself.")
        return
    st.caption(f"Latest {ticks['stream_ts'].nunique():,} ticks ({len(ticks):,} rows) "
               f"of {', '.join(picked) if picked else 'all indices'}.")
    views(ticks)


live(int(latest_n), tuple(picked), not options)
