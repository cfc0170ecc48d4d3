"""The pipeline panel: is every stage after the broker keeping up, and did the batch jobs work?

Four metrics (dead letters, each sink's freshness, the consumer's lag) over three small tables
(lag per partition, the latest run of compaction and of dbt, the latest dead letters). The tables
are ``st.table``: a handful of rows, shown as plain text that a viewer can select and copy.

Each source fails on its own: PostgreSQL down leaves the lag and the lake readable, a broker out of
reach turns only the lag into "unknown" with the reason.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import streamlit as st

from stockpulse.dashboard import data, formatting, pipeline
from stockpulse.dashboard.lag import LagRule, ProgressReader, consumer_lag
from stockpulse.dashboard.lake import cached_last_commit
from stockpulse.dashboard.queries import EXACT_COUNT_CAP
from stockpulse.dashboard.settings import DashboardSettings


def show(settings: DashboardSettings, read_progress: ProgressReader, lag_of: LagRule) -> None:
    url = settings.database_url
    try:
        facts = data.pipeline_facts(url)
    except data.DatabaseUnavailable as exc:
        st.warning(f"{exc} — retrying every {settings.refresh_seconds} s.")
        facts = None
    lag = consumer_lag(settings.bootstrap_servers, settings.topic, settings.checkpoint_dir, read_progress, lag_of)
    lake = cached_last_commit(settings.lake_path)

    dead, pg, parquet, behind = st.columns(4)
    if facts is not None:
        dead.metric("Dead letters", formatting.rows(facts.dead_letters, facts.dead_letters_estimated),
                    help=f"Rows of ticks_dead_letter: messages that could not become a tick (exact up to "
                         f"{EXACT_COUNT_CAP:,}).")
        pg.metric("PostgreSQL: since last row landed", pipeline.freshness(facts.seconds_since_last_row),
                  help="Time since max(landed_at) of ticks_raw, on the database's clock.")
        pg.caption(f"last row landed {formatting.moment(facts.last_landed_at)} UTC"
                   if facts.last_landed_at else "no row landed yet")
    lake_age = None if lake.committed_at is None else max(0.0, time.time() - lake.committed_at)
    parquet.metric("Lake: since last committed batch", pipeline.freshness(lake_age, lake.note),
                   help=f"Time since the newest file in {settings.lake_path}/_spark_metadata (one per committed "
                        "batch).")
    behind.metric("Consumer lag (records)", "unknown" if lag.unknown else f"{lag.worst:,}",
                  help="The slowest sink's records on the broker not yet committed by the Spark job: the topic's "
                       "high watermarks minus the offsets in its checkpoints.")
    # a caption under each freshness metric, always: an element that comes and goes between two
    # refreshes of a fragment may linger, faded, for a moment
    parquet.caption(lake.note or f"last batch committed "
                                 f"{formatting.moment(datetime.fromtimestamp(lake.committed_at, timezone.utc))} UTC")
    # the worst sink is often the lake between its triggers (LAKE_TRIGGER_INTERVAL): say whose it is
    behind.caption("–" if lag.unknown else " · ".join(f"{sink} {n:,}" for sink, n in lag.by_sink().items()))

    st.subheader("Consumer lag per partition")
    if lag.unknown:
        st.info(f"Lag unknown: {lag.unknown}.")
    else:
        st.caption(f"Topic {settings.topic} on {settings.bootstrap_servers}, checkpoints in "
                   f"{settings.checkpoint_dir}; read every few seconds.")
        st.table(lag.partitions, hide_index=True)

    if facts is None:
        return
    st.subheader("Batch jobs")
    st.caption("The latest run of the lake compaction and of the dbt build (table stockpulse_job_runs).")
    st.table(pipeline.job_rows(facts.job_runs, facts.db_now), hide_index=True)

    st.subheader("Latest dead letters")
    if facts.latest_dead_letters.empty:
        st.caption("None: every message so far became a tick.")
    else:
        st.table(pipeline.dead_letter_rows(facts.latest_dead_letters), hide_index=True)
