"""The dashboard as ``make up`` starts it: a detached Streamlit on a free loopback port."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from stockpulse.config import StackSettings
from stockpulse.errors import ServiceError
from stockpulse.ops.services import dashboard, processes


@pytest.fixture
def stack(database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "STOCKPULSE_STATE_DIR": str(tmp_path / "state"),
           "DASHBOARD_PORT": str(processes.free_port())}
    s = StackSettings.from_env(env)
    try:
        yield s, env
    finally:
        dashboard.stop(s)


def test_start_is_idempotent_serves_the_page_and_stop_stops_it(stack):
    s, env = stack
    dashboard.start(s, env)
    pid = processes.read_pid(s.state_dir / "run" / "dashboard.pid")
    dashboard.start(s, env)
    assert processes.read_pid(s.state_dir / "run" / "dashboard.pid") == pid
    assert dashboard.running(s)
    address = dashboard.url(dashboard.settings_for(s, env))
    assert address == f"http://127.0.0.1:{env['DASHBOARD_PORT']}"
    with urllib.request.urlopen(f"{address}/_stcore/health", timeout=30) as response:
        assert response.read().decode() == "ok"

    assert dashboard.stop(s) is True
    assert not dashboard.running(s)
    assert not processes.port_open("127.0.0.1", int(env["DASHBOARD_PORT"]))
    assert dashboard.stop(s) is False


def test_a_taken_port_is_a_clear_error(stack):
    s, env = stack
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["DASHBOARD_PORT"])))
        taken.listen()
        with pytest.raises(ServiceError, match="DASHBOARD_PORT"):
            dashboard.start(s, env)
    assert not dashboard.running(s)


def test_describe_names_the_url(stack, monkeypatch):
    s, env = stack
    monkeypatch.setenv("DASHBOARD_PORT", env["DASHBOARD_PORT"])
    assert dashboard.describe(s).startswith(f"http://127.0.0.1:{env['DASHBOARD_PORT']}, log ")
    monkeypatch.setenv("DASHBOARD_PORT", "0")
    assert "DASHBOARD_PORT" in dashboard.describe(s)
