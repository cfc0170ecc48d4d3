"""How ``make up`` configures ``airflow standalone`` (environment only; the real server is in e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockpulse.config import StackSettings
from stockpulse.errors import ConfigError
from stockpulse.ops.services import airflow as airflow_service


def test_standalone_environment(tmp_path):
    env = airflow_service.airflow_env({"PATH": "/usr/bin", "DATABASE_URL": "postgresql://x@h/db"}, tmp_path, 18080)
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("airflow/dags")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False" and env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__PORT"] == "18080" and env["AIRFLOW__API__BASE_URL"] == "http://localhost:18080"
    assert env["DATABASE_URL"] == "postgresql://x@h/db"  # tasks see the stack's settings


def test_users_own_airflow_settings_win(tmp_path):
    env = airflow_service.airflow_env({"AIRFLOW__CORE__PARALLELISM": "8"}, tmp_path, 8080)
    assert env["AIRFLOW__CORE__PARALLELISM"] == "8"


def test_describe_says_where_the_ui_and_password_are(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_PORT", raising=False)
    text = airflow_service.describe(StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path)}))
    assert "http://localhost:8080" in text
    assert str(Path(tmp_path) / "airflow" / "simple_auth_manager_passwords.json.generated") in text


def test_admin_password_is_read_from_the_generated_file(tmp_path):
    assert airflow_service.admin_password(tmp_path) is None
    (tmp_path / airflow_service.PASSWORD_FILE).write_text('{"admin": "s3cret"}')
    assert airflow_service.admin_password(tmp_path) == "s3cret"


def test_the_port_follows_airflows_own_variable_when_that_is_what_the_user_set(tmp_path, monkeypatch):
    assert airflow_service.port({}) == 8080
    assert airflow_service.port({"AIRFLOW_PORT": "9191"}) == 9191
    assert airflow_service.port({"AIRFLOW__API__PORT": "9292"}) == 9292
    assert airflow_service.port({"AIRFLOW_PORT": "9393", "AIRFLOW__API__PORT": "9393"}) == 9393
    with pytest.raises(ConfigError, match="AIRFLOW_PORT=9191 and AIRFLOW__API__PORT=9292 disagree"):
        airflow_service.port({"AIRFLOW_PORT": "9191", "AIRFLOW__API__PORT": "9292"})
    # What the server listens on, the URL the stack waits on and prints, and the tasks' base URL agree.
    monkeypatch.delenv("AIRFLOW_PORT", raising=False)
    monkeypatch.setenv("AIRFLOW__API__PORT", "9292")
    env = airflow_service.airflow_env({"AIRFLOW__API__PORT": "9292"}, tmp_path, airflow_service.port())
    assert env["AIRFLOW__API__PORT"] == "9292" and env["AIRFLOW__API__BASE_URL"] == "http://localhost:9292"
    assert "UI http://localhost:9292 " in airflow_service.describe(
        StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path)}))


def test_standalone_starts_the_scheduler_and_triggerer_without_log_servers():
    from stockpulse.ops.services.airflow_standalone import with_skip_serve_logs

    assert with_skip_serve_logs("scheduler", ["scheduler"]) == ["scheduler", "--skip-serve-logs"]
    assert with_skip_serve_logs("triggerer", ["triggerer"]) == ["triggerer", "--skip-serve-logs"]
    assert with_skip_serve_logs("api-server", ["api-server"]) == ["api-server"]
    assert with_skip_serve_logs("scheduler", ["scheduler", "--skip-serve-logs"]) == ["scheduler", "--skip-serve-logs"]


def test_the_admin_password_is_seeded_private_and_kept(tmp_path):
    import json
    import stat

    home = tmp_path / "airflow"
    airflow_service.seed_admin_password(home)
    path = home / airflow_service.PASSWORD_FILE
    first = airflow_service.admin_password(home)
    assert first and len(first) >= 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(home.stat().st_mode) == 0o700
    airflow_service.seed_admin_password(home)
    assert airflow_service.admin_password(home) == first  # a restart keeps the user's password

    path.write_text(json.dumps({"admin": "chosen"}))
    path.chmod(0o644)  # a file left by an older version
    airflow_service.seed_admin_password(home)
    assert airflow_service.admin_password(home) == "chosen" and stat.S_IMODE(path.stat().st_mode) == 0o600
