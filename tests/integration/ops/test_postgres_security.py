"""The embedded PostgreSQL gives a local user nothing: passwords for every connection, a pipeline
role without superuser powers, and passwords only the owner can read (issue 12, case 8)."""

from __future__ import annotations

import stat

import psycopg
import pytest

from stockpulse.config import PIPELINE_ROLE, READER_ROLE
from stockpulse.ops.services.postgres import ADMIN_ROLE, read_passfile


def test_the_pipeline_role_cannot_run_programs_or_read_server_files(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        role = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
        assert role == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'touch /tmp/stockpulse-owned'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('postgresql.conf')")
        # ... and yet it owns what it writes
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'ticks_%'").fetchall()
        assert owners == [(PIPELINE_ROLE,)]


@pytest.mark.parametrize("user", [ADMIN_ROLE, PIPELINE_ROLE, READER_ROLE])
def test_no_role_connects_without_its_password(pg_server, user):
    """The test suite runs as the same OS user as the server's clients, so without a password
    check any local process could connect as the superuser: what the old trust auth allowed."""
    bare = f"postgresql://{user}@{pg_server.host}:{pg_server.port}/postgres?passfile=/nonexistent"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5)
    wrong = f"postgresql://{user}:guess@{pg_server.host}:{pg_server.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_the_passwords_are_the_owners_alone(pg_server):
    passfile = pg_server.passfile
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
    assert set(read_passfile(passfile)) == {ADMIN_ROLE, PIPELINE_ROLE, READER_ROLE}
    rules = [line.split() for line in (pg_server.data_dir / "pg_hba.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules and {rule[-1] for rule in rules} == {"scram-sha-256"}
    server_log = pg_server.log_file.read_text(errors="replace")
    assert all(password not in server_log for password in read_passfile(passfile).values())
    assert stat.S_IMODE(pg_server.log_file.stat().st_mode) == 0o600


def test_the_reader_role_reads_and_cannot_write(database_url):
    from stockpulse.dashboard.settings import reader_url

    with psycopg.connect(reader_url(database_url), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM ticks_raw")


def test_a_cluster_made_before_password_auth_still_starts_and_says_how_to_renew_it(monkeypatch, caplog):
    """``.state`` from an older checkout: trust auth, ``stockpulse`` the bootstrap superuser (which
    PostgreSQL cannot demote). It keeps working, with one warning naming what to delete."""
    import logging
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from stockpulse.db import apply_init_sql
    from stockpulse.ops.services.postgres import EmbeddedPostgres
    from stockpulse.ops.services.processes import free_port

    base = Path(tempfile.mkdtemp(prefix="stockpulse-legacy-pg-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "data", free_port(), base / "pg.log", base / "secrets" / "pgpass")

    def initdb_as_before(bin_dir, _password):
        server._run(bin_dir, "initdb", "-D", str(server.data_dir), "-U", PIPELINE_ROLE, "--auth=trust",
                    "-E", "UTF8", "--locale=C")

    monkeypatch.setattr(server, "_initdb", initdb_as_before)
    try:
        with caplog.at_level(logging.WARNING):
            server.start()
        assert any("predates password auth" in r.getMessage() and str(base) in r.getMessage() for r in caplog.records)
        apply_init_sql(server.url)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == 0
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_server_listens_on_loopback_only(pg_server):
    from tests.integration.helpers import listening_addresses

    postmaster = int((pg_server.data_dir / "postmaster.pid").read_text().split()[0])
    assert listening_addresses(postmaster) == {"127.0.0.1"}
