"""PostgreSQL restarts under a running job: the job waits, then lands every row once (issue 12, case 6).

Before the sink retried, a restart failed the PostgreSQL query with ~200 lines of tracebacks and
the whole job exited. The server here is private to the test (the session's is shared), stopped
with ``pg_ctl -m fast`` (every open connection is terminated, as in a real restart) and started
again after a few triggers have hit the outage.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.db import apply_init_sql, connect
from stockpulse.ops.services.postgres import EmbeddedPostgres
from stockpulse.ops.services.processes import free_port
from stockpulse.replay.csv_rows import TickRow, read_rows
from tests.integration.helpers import (
    consumer_ready, csv_slice, lake_table, postgres_counts, start_slow_producer, wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def private_postgres():
    base = Path(tempfile.mkdtemp(prefix="stockpulse-outage-pg-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "data", free_port(), base / "pg.log", base / "secrets" / "pgpass")
    server.start()
    apply_init_sql(server.url)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_postgres_restart_mid_stream_is_waited_out_and_loses_nothing(pipeline_env, private_postgres, tmp_path):
    env = {**pipeline_env, "DATABASE_URL": private_postgres.url, "LAKE_PARTITION_BY": "index"}
    url = env["DATABASE_URL"]
    csv = csv_slice(tmp_path / "slice.csv", 2000)
    expected = Counter((r.index, r.date) for r in read_rows(csv) if isinstance(r, TickRow))
    log_path = tmp_path / "consumer.log"
    consumer_log = log_path.open("wb")
    producer = consumer = None
    try:
        consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                    stdout=consumer_log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: consumer_ready(env, consumer.pid), 300, "the consumer's first triggers")
        producer = start_slow_producer(csv, env, capture=True, tick_interval=0.02)
        wait_until(lambda: postgres_counts(url)["rows"] > 0, 120, "the first rows in PostgreSQL")

        private_postgres.stop()  # pg_ctl -m fast: open connections are terminated
        time.sleep(8)  # several 1 s triggers find the server gone
        assert consumer.poll() is None, "the job stopped while PostgreSQL was away"
        private_postgres.start()

        _, producer_err = producer.communicate(timeout=600)
        assert producer.returncode == 0, producer_err[-2000:]
        wait_until(lambda: postgres_counts(url)["rows"] >= sum(expected.values()) or consumer.poll() is not None,
                   300, "the rest of the rows")
        assert consumer.poll() is None, "the job stopped: " + log_path.read_text(errors="replace")[-3000:]
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(60)
    finally:
        for proc in (producer, consumer):
            if proc is not None and proc.poll() is None:
                proc.kill()
        consumer_log.close()

    log = log_path.read_text(errors="replace")
    assert "PostgreSQL unavailable" in log, "the outage was never noticed: the test did not test it"
    finished = subprocess.run([sys.executable, "consumer/consumer.py", "--once"], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with connect(url) as conn:
        landed = Counter(conn.execute('SELECT "index", "date" FROM ticks_raw').fetchall())
    assert landed == expected
    table = lake_table(Path(env["LAKE_PATH"]))
    assert Counter(zip(table["index"].to_pylist(), table["date"].to_pylist())) == expected
