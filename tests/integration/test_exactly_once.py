"""Kill the streaming job with SIGKILL mid-stream; after a restart nothing is missing or doubled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, lake_table, postgres_counts, produced_rows

pytestmark = pytest.mark.slow


def wait_until(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"consumer exited early ({proc.returncode}) while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_sigkill_mid_stream_then_restart(pipeline_env, tmp_path):
    csv = csv_slice(tmp_path / "slice.csv", 6000)
    producer = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], pipeline_env)
    assert producer.returncode == 0, producer.stderr
    sent = produced_rows(producer.stderr)

    env = {**pipeline_env, "MAX_OFFSETS_PER_TRIGGER": "400", "LAKE_PARTITION_BY": "index", "TRIGGER_INTERVAL": "1 second"}
    log = (tmp_path / "consumer.log").open("wb")
    consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lake = Path(env["LAKE_PATH"])
    try:
        # Kill once both sinks hold part of the stream, not all of it.
        def partly_landed():
            rows = postgres_counts(env["DATABASE_URL"])["rows"]
            committed = list((lake / "_spark_metadata").glob("[0-9]*")) if lake.exists() else []
            return 0 < rows < sent and committed
        wait_until(partly_landed, 600, "the first micro-batches", consumer)
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(30)
    finally:
        if consumer.poll() is None:
            os.killpg(consumer.pid, signal.SIGKILL)
        log.close()
    before = postgres_counts(env["DATABASE_URL"])["rows"]
    assert 0 < before < sent, "the kill should have landed mid-stream"
    # Whether the kill caught the Parquet query between writing a batch's files and committing
    # them is luck; make it certain: a copy of a landed file stands for a killed batch's output.
    landed = next(lake.rglob("part-*.parquet"))
    stray = landed.with_name(f"part-00000-{uuid.uuid4()}.c000.snappy.parquet")
    shutil.copyfile(landed, stray)

    restarted = run_cli(["consumer/consumer.py", "--once"], env)
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    assert postgres_counts(env["DATABASE_URL"]) == {"rows": sent, "distinct": sent, "bad_trade_value": 0}
    table = lake_table(lake)
    keys = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))
    assert len(keys) == sent and len(set(keys)) == sent
    assert not stray.exists()
