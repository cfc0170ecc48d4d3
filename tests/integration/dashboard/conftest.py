"""The page's environment for the AppTest tests: clean variables, empty caches, nothing reachable
but what a test sets up."""

from __future__ import annotations

import pytest
import streamlit as st

from stockpulse.ops.services.processes import free_port

PAGE_VARIABLES = ("DASHBOARD_DATABASE_URL", "DASHBOARD_REFRESH_SECONDS", "DASHBOARD_DEFAULT_TICKS", "DASHBOARD_PORT",
                  "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "CHECKPOINT_DIR", "LAKE_PATH", "ANALYTICS_DUCKDB")


@pytest.fixture
def page_env(monkeypatch, tmp_path):
    """A clean dashboard environment and empty Streamlit caches before and after each test. The
    broker, checkpoints, lake and marts point into this test's directory (none exist yet)."""
    for name in PAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "chk"))
    monkeypatch.setenv("LAKE_PATH", str(tmp_path / "lake"))
    monkeypatch.setenv("ANALYTICS_DUCKDB", str(tmp_path / "analytics.duckdb"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield monkeypatch
    st.cache_data.clear()
    st.cache_resource.clear()
