"""The page's database edge without a database: every SQLAlchemy failure is one line, failures are
not cached, and the service starts Streamlit so that viewers never see error details."""

from __future__ import annotations

import pytest
import streamlit as st
from sqlalchemy import exc as sa_exc
from streamlit import config as st_config

from stockpulse.dashboard import data
from stockpulse.ops.services import dashboard as service

URL = "postgresql://viewer:hunter2@db.example:5432/stocks"


class BrokenEngine:
    """Stands in for the cached engine: connecting raises what a pool or driver would."""

    def __init__(self, error: Exception):
        self.error = error

    def connect(self):
        raise self.error


@pytest.fixture
def engine_raising(monkeypatch):
    def install(error: Exception) -> None:
        monkeypatch.setattr(data, "engine", lambda url: BrokenEngine(error))
    st.cache_data.clear()
    yield install
    st.cache_data.clear()


def test_a_pool_timeout_is_one_line_not_a_traceback(engine_raising):
    engine_raising(sa_exc.TimeoutError(
        "QueuePool limit of size 2 overflow 2 reached, connection timed out, timeout 5.00", code="3o7r"))
    with pytest.raises(data.DatabaseUnavailable) as caught:
        data.live(URL, 10, ())
    message = str(caught.value)
    assert message == ("cannot read PostgreSQL at postgresql://viewer:***@db.example:5432/stocks: "
                       "QueuePool limit of size 2 overflow 2 reached, connection timed out, timeout 5.00")


@pytest.mark.parametrize("error", [
    sa_exc.ArgumentError("Could not parse SQLAlchemy URL"),
    sa_exc.NoSuchModuleError("Can't load plugin: sqlalchemy.dialects:nosuch"),
    sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused\nIs the server running?")),
])
def test_every_sqlalchemy_error_becomes_database_unavailable(engine_raising, error):
    engine_raising(error)
    with pytest.raises(data.DatabaseUnavailable) as caught:
        data.live(URL, 10, ())
    assert "\n" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_failed_index_options_are_not_cached(engine_raising, monkeypatch):
    engine_raising(sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert data.index_options(URL) == []
    monkeypatch.setattr(data, "_read", lambda url, query, *args: ["HSI", "NYA"])
    assert data.index_options(URL) == ["HSI", "NYA"]  # asked again, not the cached failure
    monkeypatch.setattr(data, "_read", lambda url, query, *args: ["HSI", "IXIC", "NYA"])
    assert data.index_options(URL) == ["HSI", "NYA"]  # a success is cached ...
    data.forget_index_options()
    assert data.index_options(URL) == ["HSI", "IXIC", "NYA"]  # ... until the page forgets it


def test_sessions_are_read_only_with_a_statement_timeout():
    assert "-c default_transaction_read_only=on" in data.SESSION_OPTIONS
    assert f"-c statement_timeout={data.STATEMENT_TIMEOUT_MS}" in data.SESSION_OPTIONS


def test_the_service_hides_error_details_from_viewers():
    command = service.command(8501)
    value = command[command.index("--client.showErrorDetails") + 1]
    assert value == st_config.ShowErrorDetailsConfigOptions.NONE.value  # "false" would still show the trace
