"""Dashboard settings: defaults that work on a laptop, the read-only URL, and one-line errors."""

import pytest

from stockpulse.dashboard.settings import DashboardSettings, reader_url, sqlalchemy_url
from stockpulse.errors import ConfigError


def test_defaults_read_the_embedded_server_as_the_reader_role():
    s = DashboardSettings.from_env({"STOCKPULSE_STATE_DIR": "/srv/state"})
    passfile = "?passfile=/srv/state/secrets/pgpass"  # the reader's password is in the same file
    assert s.database_url == "postgresql://stockpulse_reader@127.0.0.1:5432/stocks" + passfile
    assert (s.port, s.refresh_seconds, s.default_ticks) == (8501, 5, 500)
    assert s.engine_url == "postgresql+psycopg://stockpulse_reader@127.0.0.1:5432/stocks" + passfile


def test_default_url_follows_database_url_but_drops_the_writers_password():
    s = DashboardSettings.from_env({"DATABASE_URL": "postgresql://app:s3cret@db.example:6432/stocks?sslmode=require"})
    assert s.database_url == "postgresql://stockpulse_reader@db.example:6432/stocks?sslmode=require"


def test_explicit_dashboard_url_wins():
    url = "postgresql://viewer:pw@h/db"
    s = DashboardSettings.from_env({"DATABASE_URL": "postgresql://app@x/y", "DASHBOARD_DATABASE_URL": url})
    assert s.database_url == url


@pytest.mark.parametrize("url, expected", [
    ("postgresql://h/db", "postgresql://stockpulse_reader@h/db"),
    ("postgres://u@h:1/db", "postgres://stockpulse_reader@h:1/db"),
    ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://stockpulse_reader@h/db?sslmode=require"),
])
def test_reader_url(url, expected):
    assert reader_url(url) == expected


def test_sqlalchemy_url_uses_psycopg3():
    assert sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("name, value, words", [
    ("DASHBOARD_REFRESH_SECONDS", "soon", "not a whole number"),
    ("DASHBOARD_REFRESH_SECONDS", "0", "at least 1"),
    ("DASHBOARD_PORT", "70000", "not a TCP port"),
    ("DASHBOARD_DEFAULT_TICKS", "5", "at least 10"),
    ("DASHBOARD_DEFAULT_TICKS", "1000000", "more than the page shows"),
    ("DASHBOARD_DATABASE_URL", "mysql://u:pw@h/db", "must start with postgresql://"),
    ("DASHBOARD_DATABASE_URL", "postgresql://u:pw@h:54x2/db", "its port is not a number"),
    ("DASHBOARD_DATABASE_URL", "postgresql://u:pw@h:/db", "its port is not a number"),
    ("DASHBOARD_DATABASE_URL", "postgresql://u:pw@h:99999/db", "port 99999 is not 1-65535"),
    ("DATABASE_URL", "postgresql://app:pw@db:54x2/stocks", "its port is not a number"),
])
def test_bad_values_fail_with_a_line_naming_the_variable(name, value, words):
    with pytest.raises(ConfigError) as caught:
        DashboardSettings.from_env({name: value})
    message = str(caught.value)
    assert name in message and words in message
    assert ":pw@" not in message and "\n" not in message


def test_a_url_sqlalchemy_parses_is_accepted():
    for url in ("postgresql://u@h/db?sslmode=require", "postgresql://u@[::1]:5432/db", "postgresql:///db?host=/tmp"):
        assert DashboardSettings.from_env({"DASHBOARD_DATABASE_URL": url}).database_url == url


def test_a_bad_writer_url_is_checked_before_the_reader_is_derived():
    with pytest.raises(ConfigError, match="DATABASE_URL='postgresql://app:\\*\\*\\*@db:5x/stocks'"):
        DashboardSettings.from_env({}, base_url="postgresql://app:pw@db:5x/stocks")


def test_init_sql_creates_the_reader_role_the_dashboard_connects_as():
    """The role's name lives in READER_ROLE and in the DDL; this ties the two, and the grant covers
    every table the page reads (the pipeline panel reads the dead letters and the batch-job runs)."""
    from stockpulse.dashboard import queries
    from stockpulse.dashboard.settings import READER_ROLE
    from stockpulse.db import INIT_SQL

    sql = INIT_SQL.read_text()
    tables = ", ".join((queries.TABLE, queries.DEAD_LETTER_TABLE, queries.JOB_RUNS_TABLE))
    assert f"CREATE ROLE {READER_ROLE} LOGIN" in sql and f"GRANT SELECT ON {tables} TO {READER_ROLE}" in sql


def test_the_pipeline_panel_and_analytics_look_where_the_pipeline_writes():
    s = DashboardSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092", "KAFKA_TOPIC": "t",
                                    "CHECKPOINT_DIR": "/srv/chk", "LAKE_PATH": "s3a://bucket/lake",
                                    "ANALYTICS_DUCKDB": "/srv/marts.duckdb"})
    assert (s.bootstrap_servers, s.topic, s.checkpoint_dir, s.lake_path) == ("k1:9092", "t", "/srv/chk",
                                                                           "s3a://bucket/lake")
    assert str(s.analytics_db) == "/srv/marts.duckdb"


def test_pipeline_defaults_are_the_embedded_broker_and_the_projects_directories():
    from stockpulse.config import PROJECT_ROOT

    s = DashboardSettings.from_env({})
    assert (s.bootstrap_servers, s.topic) == ("127.0.0.1:9092", "stock_ticks")
    assert (s.checkpoint_dir, s.lake_path) == (str(PROJECT_ROOT / "chk"), str(PROJECT_ROOT / "lake/parquet"))
    assert s.analytics_db == PROJECT_ROOT / "lake" / "analytics.duckdb"


def test_index_names_in_the_share_notes_cannot_become_markup():
    from stockpulse.dashboard import formatting

    hostile = "[x](http://evil)"
    for note in (formatting.no_volume([hostile], [hostile, "HSI"]), formatting.thin_share([hostile], 0.005)):
        assert "\\[x\\]" in note and "[x](" not in note
