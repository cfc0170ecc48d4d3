"""The page itself, run by Streamlit's AppTest against real PostgreSQL.

AppTest executes ``streamlit_app.py`` in this process (the fragment runs once; ``run_every`` does
not fire here), so the settings come from this process's environment. The page reads as
``stockpulse_reader``, derived from ``DATABASE_URL`` exactly as in production.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from stockpulse.config import PROJECT_ROOT
from stockpulse.services.processes import free_port
from tests.integration.dashboard_seed import INDICES, insert_ticks, known_ticks

APP = str(PROJECT_ROOT / "streamlit_app.py")
METRICS = ("Rows in ticks_raw", "Ticks/s (last minute)", "Since last tick landed", "Latest stream_ts (UTC)")


@pytest.fixture
def page_env(monkeypatch):
    """A clean dashboard environment and empty Streamlit caches before and after each test."""
    for name in ("DASHBOARD_DATABASE_URL", "DASHBOARD_REFRESH_SECONDS", "DASHBOARD_DEFAULT_TICKS", "DASHBOARD_PORT"):
        monkeypatch.delenv(name, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield monkeypatch
    st.cache_data.clear()
    st.cache_resource.clear()


def run_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest):
    return at.get("vega_lite_chart")


def test_seeded_table_shows_four_charts_and_exact_metrics(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    ticks = known_ticks(per_index=8, recent=3)
    started = time.monotonic()
    insert_ticks(database_url, ticks)
    at = run_page()
    elapsed = time.monotonic() - started

    shown = metric_values(at)
    assert set(shown) == set(METRICS)
    assert shown["Rows in ticks_raw"] == f"{len(ticks):,}"
    assert shown["Ticks/s (last minute)"] == f"{sum(t.landed_seconds_ago < 60 for t in ticks) / 60:.2f}"
    assert shown["Latest stream_ts (UTC)"] == max(t.stream_ts for t in ticks).strftime("%Y-%m-%d %H:%M:%S")
    newest_landing = min(t.landed_seconds_ago for t in ticks)
    value, unit = shown["Since last tick landed"].split()
    assert unit == "s" and newest_landing <= int(value) <= newest_landing + elapsed + 1
    assert len(charts(at)) == 4
    assert [h.value for h in at.subheader] == ["Close", "Rebased to 100", "% change from the first tick",
                                               "Share of volume and trade value"]
    assert not at.warning and not at.error and not at.info
    assert at.multiselect[0].options == list(INDICES)


def test_picking_one_index_narrows_the_views(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    insert_ticks(database_url, known_ticks())
    at = run_page()
    at.multiselect[0].select("HSI").run()
    assert not at.exception
    assert len(charts(at)) == 4
    assert any("of HSI." in c.value for c in at.caption)


def test_empty_table_waits_for_the_first_ticks(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    at = run_page()
    assert metric_values(at) == {"Rows in ticks_raw": "0", "Ticks/s (last minute)": "0.00",
                                 "Since last tick landed": "–", "Latest stream_ts (UTC)": "–"}
    assert "Waiting for the first ticks" in at.info[0].value
    assert not charts(at) and not at.warning and not at.error


def test_unreachable_database_is_one_line_that_names_the_url_and_keeps_retrying(page_env):
    port = free_port()
    page_env.setenv("DASHBOARD_DATABASE_URL", f"postgresql://viewer:hunter2@127.0.0.1:{port}/stocks")
    page_env.setenv("DASHBOARD_REFRESH_SECONDS", "7")
    at = run_page()
    assert len(at.warning) == 1
    line = at.warning[0].value
    assert f"postgresql://viewer:***@127.0.0.1:{port}/stocks" in line
    assert "retrying every 7 s" in line and "\n" not in line and "hunter2" not in line
    assert not charts(at) and not at.metric
    assert at.multiselect[0].options == []


def test_missing_table_says_what_to_do(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE ticks_raw")
    at = run_page()
    assert len(at.warning) == 1
    assert "table ticks_raw does not exist" in at.warning[0].value
    assert "postgres/init.sql" in at.warning[0].value


def test_bad_setting_is_a_clear_error_not_a_traceback(page_env):
    page_env.setenv("DASHBOARD_REFRESH_SECONDS", "often")
    at = run_page()
    assert len(at.error) == 1
    assert "DASHBOARD_REFRESH_SECONDS='often' is not a whole number" in at.error[0].value
    assert not at.metric and not charts(at)
