"""Fixtures for the Airflow tests: an Airflow home per module, the DAG run as a real CLI, waits.

Everything points at the session's test PostgreSQL and broker (through ``pipeline_env``) and at
temporary directories, never at a user's defaults. Every consumer a DAG run starts is stopped
after the test, found as the supervisor finds it (its job lock, or the pid file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockpulse.ops import supervisor
from stockpulse.ops.services import airflow as airflow_service
from stockpulse.ops.services import processes

from .steps import airflow_cli, paths_for


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """A migrated Airflow metadata DB (SQLite) shared by the module's tests."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_service.airflow_env(os.environ, home, processes.free_port())
    result = airflow_cli(["db", "migrate"], env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture
def dag_env(pipeline_env, airflow_home) -> dict[str, str]:
    """The test pipeline's environment plus the module's Airflow home."""
    env = airflow_service.airflow_env(pipeline_env, airflow_home, processes.free_port())
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(processes.free_port())
    env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(processes.free_port())
    return env


@pytest.fixture
def consumer_paths(pipeline_env):
    """The consumer's files in the test's state and checkpoint dirs; stops the consumer afterwards."""
    paths = paths_for(pipeline_env)
    yield paths
    supervisor.stop(paths)
