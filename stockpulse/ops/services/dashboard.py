"""The dashboard service for ``make up``: Streamlit serving ``streamlit_app.py`` on 127.0.0.1.

It runs detached with a pid file like the other jobs, reads PostgreSQL as the read-only role (the
URL is decided here, from the stack's PostgreSQL, and handed over as ``DASHBOARD_DATABASE_URL``)
and listens on loopback only: the page has no login, so it is not exposed beyond this machine.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Mapping

from stockpulse.config import PROJECT_ROOT, StackSettings
from stockpulse.dashboard.settings import DashboardSettings
from stockpulse.errors import ServiceError, StockPulseError
from stockpulse.ops.services import processes

logger = logging.getLogger(__name__)

NAME = "dashboard"
HOST = "127.0.0.1"
APP = PROJECT_ROOT / "streamlit_app.py"
START_TIMEOUT_SECONDS = 90.0


def _pid_file(s: StackSettings) -> Path:
    return s.paths.pid_file(NAME)


def _log_file(s: StackSettings) -> Path:
    return s.paths.log_file(NAME)


def settings_for(s: StackSettings, env: Mapping[str, str] | None = None) -> DashboardSettings:
    """The dashboard's settings for this stack: its reader URL follows the stack's PostgreSQL."""
    return DashboardSettings.from_env(os.environ if env is None else env, base_url=s.postgres.url)


def command(port: int) -> list[str]:
    """``streamlit run`` headless on loopback; no file watcher (nothing edits the app while it serves),
    no usage statistics, a viewer's toolbar (no "Deploy" button), and no error details for viewers:
    should the page ever raise, the browser gets Streamlit's generic line and the log the traceback
    (``none``; ``false`` would still show the stack trace)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", HOST, "--server.port", str(port), "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        "--client.showErrorDetails", "none",
    ]


def url(settings: DashboardSettings) -> str:
    return f"http://{HOST}:{settings.port}"


def start(s: StackSettings, env: Mapping[str, str] | None = None) -> None:
    """Start the dashboard detached (idempotent) and wait until it listens."""
    env = dict(os.environ if env is None else env)
    settings = settings_for(s, env)  # a bad DASHBOARD_* value fails here, before anything starts
    if running(s):
        logger.info("dashboard already running at %s", url(settings))
        return
    if processes.port_open(HOST, settings.port):
        raise ServiceError(f"port {settings.port} is taken by another program: set DASHBOARD_PORT to a free port")
    env.update(DASHBOARD_DATABASE_URL=settings.database_url, DASHBOARD_PORT=str(settings.port))
    processes.start_detached(NAME, command(settings.port), _pid_file(s), _log_file(s), env=env, cwd=PROJECT_ROOT)
    processes.wait_for_port(HOST, settings.port, START_TIMEOUT_SECONDS, "the dashboard", _log_file(s))


def stop(s: StackSettings) -> bool:
    """Stop it; True when something was running."""
    return processes.stop_detached(NAME, _pid_file(s), timeout=20)


def running(s: StackSettings) -> bool:
    return processes.read_pid(_pid_file(s)) is not None


def describe(s: StackSettings) -> str:
    try:
        return f"{url(settings_for(s))}, log {_log_file(s)}"
    except StockPulseError as exc:
        return f"not startable: {exc}"
