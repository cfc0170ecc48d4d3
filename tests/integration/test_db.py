"""stockpulse/db.py against a real PostgreSQL: applying init.sql, and what a bad connection says.

Every starter (``make up``, the consumer, Airflow's preflight) applies ``postgres/init.sql``, so
it must be harmless when applied again and when applied by several processes at once; the module
serialises the application with a PostgreSQL advisory lock, and a test proves a second applier
really waits on it. A server that is down, or a URL that is wrong, must give the project's one-line
:class:`ServiceError` naming the URL with its password hidden: these messages end up in Airflow
task logs and terminals.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from stockpulse.db import INIT_SQL_LOCK, apply_init_sql, connect
from stockpulse.errors import ServiceError
from stockpulse.ops.services.postgres import read_passfile
from stockpulse.ops.services.processes import free_port

TABLES = ("ticks_raw", "ticks_dead_letter")


@pytest.fixture
def empty_database_url(pg_server):
    """A new database with nothing applied (``database_url`` has init.sql applied already)."""
    admin = pg_server.admin_url()
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER stockpulse')
    yield pg_server.url_for(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_present(url: str) -> set[str]:
    with connect(url) as conn:
        return {t for t in TABLES if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]}


def catalog(url: str) -> dict:
    """What init.sql defines, as PostgreSQL reports it: columns, constraints, indexes, grants."""
    with connect(url) as conn:
        def rows(sql):
            return conn.execute(sql).fetchall()
        return {
            "columns": rows("SELECT table_name, column_name, data_type, is_nullable, column_default "
                            "FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2"),
            "constraints": rows("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                "WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2"),
            "indexes": rows("SELECT tablename, indexname, indexdef FROM pg_indexes "
                            "WHERE schemaname = current_schema() ORDER BY 1, 2"),
            "grants": rows("SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
                           "WHERE table_schema = current_schema() ORDER BY 1, 2, 3"),
            "reader": rows("SELECT rolconfig FROM pg_roles WHERE rolname = 'stockpulse_reader'"),
        }


# -- init.sql ------------------------------------------------------------------------------------

def test_init_sql_applied_again_changes_nothing_and_keeps_the_data(database_url):
    before = catalog(database_url)
    assert {t for t, *_ in before["columns"]} >= set(TABLES)
    with connect(database_url) as conn:
        conn.execute("INSERT INTO ticks_dead_letter (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, reason) "
                     "VALUES ('t', 0, 0, now(), 'kept')")
        conn.commit()
    apply_init_sql(database_url)
    apply_init_sql(database_url)
    assert catalog(database_url) == before
    with connect(database_url) as conn:
        assert conn.execute("SELECT reason FROM ticks_dead_letter").fetchall() == [("kept",)]


def test_init_sql_applied_by_several_starters_at_once_succeeds_everywhere(empty_database_url):
    starters = 4
    barrier, errors = threading.Barrier(starters), []

    def start():
        barrier.wait()
        try:
            apply_init_sql(empty_database_url)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert tables_present(empty_database_url) == set(TABLES)


def test_a_second_applier_waits_for_the_advisory_lock_of_the_first(empty_database_url):
    """Hold the lock as a concurrent applier would; init.sql must not run until it is released."""
    done, errors = threading.Event(), []

    def apply():
        try:
            apply_init_sql(empty_database_url)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    with connect(empty_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (INIT_SQL_LOCK,))
        thread = threading.Thread(target=apply)
        thread.start()
        try:
            waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s "
                       "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            deadline = time.monotonic() + 30  # only a bound on waiting, not a measured duration
            while holder.execute(waiting, (INIT_SQL_LOCK,)).fetchone()[0] == 0:
                assert not done.is_set(), f"init.sql was applied without waiting for the lock ({errors})"
                assert time.monotonic() < deadline, "the applier never queued on the advisory lock"
                time.sleep(0.05)
            assert not done.is_set() and tables_present(empty_database_url) == set()
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (INIT_SQL_LOCK,))
            thread.join(60)
    assert done.is_set() and errors == []
    assert tables_present(empty_database_url) == set(TABLES)


# -- connection errors ---------------------------------------------------------------------------

def _down_urls():
    port = free_port()
    return [
        (f"postgresql://u:s3cret@127.0.0.1:{port}/x", f"postgresql://u:***@127.0.0.1:{port}/x"),
        (f"postgresql://u@127.0.0.1:{port}/x?password=s3cret", f"postgresql://u@127.0.0.1:{port}/x?password=***"),
    ]


@pytest.mark.parametrize("url, shown", _down_urls(), ids=["userinfo-password", "query-password"])
@pytest.mark.parametrize("call", [connect, apply_init_sql], ids=["connect", "apply_init_sql"])
def test_a_down_server_is_one_line_naming_the_url_without_its_password(call, url, shown):
    with pytest.raises(ServiceError) as caught:
        call(url)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to PostgreSQL at {shown}: ")
    assert "s3cret" not in message and "fix DATABASE_URL" in message


def test_a_missing_database_on_a_running_server_is_named_without_the_password(pg_server):
    secret = read_passfile(pg_server.passfile)["stockpulse"]  # the real one: past auth, to the database
    url = f"postgresql://stockpulse:{secret}@{pg_server.host}:{pg_server.port}/no_such_db"
    with pytest.raises(ServiceError) as caught:
        connect(url)
    message = str(caught.value)
    assert "\n" not in message and secret not in message
    assert f"stockpulse:***@{pg_server.host}:{pg_server.port}/no_such_db" in message
    assert 'database "no_such_db" does not exist' in message


def test_a_port_that_is_not_a_number_is_a_service_error_without_the_password():
    with pytest.raises(ServiceError) as caught:
        connect("postgresql://u:s3cret@127.0.0.1:notaport/x")
    assert "s3cret" not in str(caught.value) and "notaport" in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://u:s3cret@[::1/x", "postgresql://u:s3cret@127.0.0.1:1/x?bogus=1"],
                         ids=["unclosed-ipv6-bracket", "unknown-query-parameter"])
def test_a_url_libpq_cannot_parse_is_a_service_error_without_the_password(url):
    with pytest.raises(ServiceError) as caught:
        connect(url)
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)
