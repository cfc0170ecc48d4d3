"""The streaming job writes an ``s3a://`` lake on SeaweedFS (checkpoints local); SIGKILLed
mid-stream and restarted, every row is in the lake exactly once for Spark and for a lister."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid

import duckdb
import pyarrow.dataset as ds
import pytest
from pyarrow import fs as pafs

from stockpulse.config import PROJECT_ROOT, LakehouseSettings
from stockpulse.lakehouse import lake_view
from stockpulse.lakehouse.storage import open_location
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, listening_addresses, postgres_counts, produced_rows

pytestmark = pytest.mark.slow

SPARK_READ = """
import json
from stockpulse.config import ConsumerSettings
from stockpulse.stream.job import build_session

settings = ConsumerSettings.from_env()
spark = build_session(settings)
row = spark.read.parquet(settings.lake_path).selectExpr(
    "count(*) AS n", "count(DISTINCT kafka_partition, kafka_offset) AS d").first()
print(json.dumps({"rows": row.n, "distinct": row.d}))
spark.stop()
"""
"""Spark's reader with the job's own session settings (S3A jars and fs.s3a.* from the AWS variables)."""


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"consumer exited early ({proc.returncode}) while waiting for {what}")
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def objects(fs, root: str) -> list[str]:
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return [info.path for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]


def test_the_store_listens_on_loopback_only_and_a_second_start_is_harmless(seaweedfs_server):
    seaweedfs_server.start()
    pid = int(seaweedfs_server.pid_file.read_text())
    assert listening_addresses(pid) == {"127.0.0.1"}


def test_sigkill_mid_stream_then_restart_leaves_an_exact_s3_lake(seaweedfs_server, pipeline_env, tmp_path):
    seed = random.randrange(10**6)
    print(f"random seed {seed}")
    chance = random.Random(seed)
    env = {**pipeline_env, **seaweedfs_server.client_env(),
           "LAKE_PATH": f"s3a://{seaweedfs_server.bucket}/t-{uuid.uuid4().hex[:10]}/lake",
           "MAX_OFFSETS_PER_TRIGGER": "400", "LAKE_PARTITION_BY": "index", "TRIGGER_INTERVAL": "1 second"}
    assert not env["CHECKPOINT_DIR"].startswith("s3a:")  # checkpoints stay local (atomic rename)
    fs, root = open_location(env["LAKE_PATH"], env)

    producer = run_cli(["producer/producer.py", "--csv", str(csv_slice(tmp_path / "slice.csv", 3000)),
                        "--tick-interval", "0", "--no-progress"], env)
    assert producer.returncode == 0, producer.stderr
    sent = produced_rows(producer.stderr)

    log = tmp_path / "consumer.log"
    target = chance.uniform(0.2, 0.6) * sent
    with log.open("ab") as out:
        consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def landed_past_target() -> bool:
            committed = [p for p in objects(fs, f"{root}/_spark_metadata") if p.rsplit("/", 1)[-1].isdigit()]
            return bool(committed) and postgres_counts(env["DATABASE_URL"])["rows"] >= target
        wait_until(landed_past_target, 600, f"{target:.0f} rows and a committed lake batch", consumer)
        time.sleep(chance.uniform(0, 1.5))  # anywhere in the next batch: reading, writing, committing
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(30)
    finally:
        if consumer.poll() is None:
            os.killpg(consumer.pid, signal.SIGKILL)
    assert postgres_counts(env["DATABASE_URL"])["rows"] < sent, f"the kill should land mid-stream; log {log}"
    # Whether the kill caught a batch between writing its objects and committing them is luck; a
    # copy of a landed object under a new part name stands for such a batch's output.
    landed = next(p for p in objects(fs, root) if "/part-" in p and "/_" not in p)
    stray = f"{landed.rsplit('/', 1)[0]}/part-00000-{uuid.uuid4()}.c000.snappy.parquet"
    fs.copy_file(landed, stray)

    restarted = run_cli(["consumer/consumer.py", "--once"], env)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert re.search(r"removed \d+ Parquet object\(s\)", restarted.stderr), restarted.stderr[-3000:]

    assert postgres_counts(env["DATABASE_URL"]) == {"rows": sent, "distinct": sent, "bad_trade_value": 0}
    # a directory lister (pyarrow through S3FileSystem) sees every row once
    assert fs.get_file_info(stray).type == pafs.FileType.NotFound
    table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive",
                       ignore_prefixes=["_", "."]).to_table(columns=["kafka_partition", "kafka_offset"])
    keys = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))
    assert len(keys) == sent and len(set(keys)) == sent
    # and so does Spark, reading s3a:// through the sink's log with the job's own S3A settings
    read = run_cli(["-c", SPARK_READ], env)
    assert read.returncode == 0, read.stderr[-3000:]
    assert json.loads(read.stdout.strip().splitlines()[-1]) == {"rows": sent, "distinct": sent}

    # The later layers on the same store: compaction through S3, then dbt reading the compacted zone.
    env.update({"LAKE_COMPACTED_PATH": f"{env['LAKE_PATH']}-compacted", "ANALYTICS_DUCKDB": str(tmp_path / "a.duckdb"),
                "COMPACTION_MIN_AGE_SECONDS": "0", "COMPACTION_DELETE_GRACE_SECONDS": "0"})
    compacted = run_cli(["-m", "stockpulse.lakehouse.compaction"], env)
    assert compacted.returncode == 0, compacted.stderr[-3000:]
    settings = LakehouseSettings.from_env(env)
    files = lake_view.plan(settings, env)
    assert files.raw == () and files.compacted
    view = lake_view.read_arrow(settings, env)
    keys = list(zip(view["kafka_partition"].to_pylist(), view["kafka_offset"].to_pylist()))
    assert len(keys) == len(set(keys)) == sent
    assert not [p for p in objects(fs, root) if "/part-" in p and "/_" not in p], "compacted inputs are deleted"
    built = run_cli(["-m", "stockpulse.lakehouse.dbt_build"], env)
    assert built.returncode == 0, built.stderr[-3000:]
    with duckdb.connect(env["ANALYTICS_DUCKDB"], read_only=True) as marts:
        days = marts.execute("SELECT count(*) FROM fct_index_daily").fetchone()[0]
    assert days == len(set(zip(view["index"].to_pylist(), view["date"].to_pylist())))


def test_the_store_killed_mid_stream_then_back_loses_and_doubles_nothing(seaweedfs_server, pipeline_env, tmp_path):
    """SeaweedFS SIGKILLed while the job writes to it: the job stops with one line or rides it
    out; with the store back and the job (re)started, the lake is exact."""
    env = {**pipeline_env, **seaweedfs_server.client_env(),
           "LAKE_PATH": f"s3a://{seaweedfs_server.bucket}/t-{uuid.uuid4().hex[:10]}/lake",
           "MAX_OFFSETS_PER_TRIGGER": "300", "LAKE_PARTITION_BY": "index", "TRIGGER_INTERVAL": "1 second"}
    fs, root = open_location(env["LAKE_PATH"], env)
    producer = run_cli(["producer/producer.py", "--csv", str(csv_slice(tmp_path / "slice.csv", 2000)),
                        "--tick-interval", "0", "--no-progress"], env)
    assert producer.returncode == 0, producer.stderr
    sent = produced_rows(producer.stderr)
    log = tmp_path / "consumer.log"
    with log.open("ab") as out:
        consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: bool([p for p in objects(fs, f"{root}/_spark_metadata") if p.rsplit("/", 1)[-1].isdigit()]),
                   600, "a committed lake batch", consumer)
        os.kill(int(seaweedfs_server.pid_file.read_text()), signal.SIGKILL)
        time.sleep(20)
        seaweedfs_server.start()
        deadline = time.monotonic() + 300
        while consumer.poll() is None and time.monotonic() < deadline:
            try:
                if len(lake_view.read_arrow(LakehouseSettings.from_env(env), env)) == sent:
                    break
            except OSError:
                pass
            time.sleep(2)
        stopped = consumer.poll() is not None
    finally:
        if consumer.poll() is None:
            os.killpg(consumer.pid, signal.SIGTERM)
            consumer.wait(60)
    print(f"job {'stopped' if stopped else 'rode it out'}; log tail:\n{log.read_text()[-1500:]}")
    if stopped:
        last = [line for line in log.read_text().splitlines() if line.strip()][-1]
        assert "Traceback" not in last, last
    restarted = run_cli(["consumer/consumer.py", "--once"], env)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    view = lake_view.read_arrow(LakehouseSettings.from_env(env), env)
    keys = list(zip(view["kafka_partition"].to_pylist(), view["kafka_offset"].to_pylist()))
    assert len(keys) == len(set(keys)) == sent
    assert postgres_counts(env["DATABASE_URL"]) == {"rows": sent, "distinct": sent, "bad_trade_value": 0}
