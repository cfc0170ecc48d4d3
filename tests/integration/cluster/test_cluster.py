"""The unchanged pipeline on a local cluster: a Spark standalone master with two workers and a
three-node Kafka cluster (replication 3, ``min.insync.replicas=2``, 6 partitions), started once
for the module by the code behind ``make cluster-up`` (issue 15).

Only settings differ from ``local[2]`` on one broker: ``SPARK_MASTER`` and
``KAFKA_BOOTSTRAP_SERVERS``. Each test checks exact counts in both sinks: every CSV row once in
``ticks_raw`` and once in the lake, whatever was killed on the way.
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

from stockpulse.config import PROJECT_ROOT, ClusterSettings, StackSettings
from stockpulse.db import connect
from stockpulse.ops import cluster as cluster_cli
from stockpulse.ops.services.kafka_cluster import in_sync_replicas
from stockpulse.ops.services.processes import free_port_block, read_pid
from stockpulse.replay.csv_rows import TickRow, read_rows
from tests.conftest import run_cli
from tests.integration.helpers import (
    consumer_ready, csv_slice, lake_table, listening_addresses, postgres_counts, records_in_topic,
    start_slow_producer, wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_cluster():
    """``make cluster-up`` on free ports in a temporary state directory; yields (stack, cluster,
    the settings it printed)."""
    base = Path(tempfile.mkdtemp(prefix="stockpulse-cluster-"))
    env = {"STOCKPULSE_STATE_DIR": str(base), "KAFKA_TOPIC": "cluster_ticks",
           "CLUSTER_KAFKA_BASE_PORT": str(free_port_block((0, 1, 2, 100, 101, 102))),
           "CLUSTER_SPARK_MASTER_PORT": str(free_port_block((0,))),
           "CLUSTER_SPARK_UI_PORT": str(free_port_block((0, 1, 2)))}
    stack, cluster = StackSettings.from_env({**os.environ, **env}), ClusterSettings.from_env(env)
    try:
        settings = cluster_cli.up(stack, cluster)
        yield stack, cluster, settings
    finally:
        cluster_cli.down(stack, cluster)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cluster_env(local_cluster, pipeline_env, tmp_path):
    """The test's pipeline environment moved onto the cluster, with a fresh 6-partition topic."""
    from stockpulse.ops.services.broker import ensure_topic

    _, cluster, settings = local_cluster
    topic = f"cl_{tmp_path.name[-24:]}".replace("-", "_")
    ensure_topic(settings["KAFKA_BOOTSTRAP_SERVERS"], topic, cluster.topic_partitions)
    return {**pipeline_env, **settings, "KAFKA_TOPIC": topic, "LAKE_PARTITION_BY": "index"}


def expected_rows(csv: Path) -> Counter:
    return Counter((r.index, r.date) for r in read_rows(csv) if isinstance(r, TickRow))


def assert_exactly_once(env: dict[str, str], expected: Counter) -> None:
    with connect(env["DATABASE_URL"]) as conn:
        landed = Counter(conn.execute('SELECT "index", "date" FROM ticks_raw').fetchall())
    assert landed == expected, "PostgreSQL: lost or doubled rows"
    assert postgres_counts(env["DATABASE_URL"])["bad_trade_value"] == 0
    table = lake_table(Path(env["LAKE_PATH"]))
    assert Counter(zip(table["index"].to_pylist(), table["date"].to_pylist())) == expected, "lake: lost or doubled rows"


def applications(local_cluster) -> list[str]:
    """Names of every application the cluster's master has run or runs (from its UI's JSON)."""
    import json
    import urllib.request

    _, cluster, _ = local_cluster
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.spark_ui_port}/json/", timeout=10) as response:
        state = json.load(response)
    return [app["name"] for key in ("activeapps", "completedapps") for app in state.get(key, [])]


@pytest.mark.parametrize("source", ["builtin", "python"])
def test_a_replay_lands_exactly_once_with_the_job_on_the_cluster(cluster_env, local_cluster, tmp_path, source):
    """``KAFKA_SOURCE=python`` too: its tasks run on the workers' executors, which get the
    package through ``addPyFile``."""
    _, _, settings = local_cluster
    env = {**cluster_env, "KAFKA_SOURCE": source}
    csv = csv_slice(tmp_path / "slice.csv", 1500)
    sent = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], env)
    assert sent.returncode == 0, sent.stderr[-2000:]
    assert records_in_topic(settings["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"]) == 1500
    before = applications(local_cluster).count("stockpulse-consumer")
    job = run_cli(["consumer/consumer.py", "--once"], env)
    assert job.returncode == 0, job.stderr[-3000:]
    assert applications(local_cluster).count("stockpulse-consumer") == before + 1, "the job did not run on the cluster"
    assert_exactly_once(env, expected_rows(csv))


def start_job(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def finish(job: subprocess.Popen, env: dict[str, str], expected: Counter, log: Path) -> None:
    """Let the running job land everything, stop it, and check it never stopped on its own."""
    total = sum(expected.values())
    wait_until(lambda: postgres_counts(env["DATABASE_URL"])["rows"] >= total or job.poll() is not None,
               300, "every row in PostgreSQL")
    assert job.poll() is None, "the job stopped: " + log.read_text(errors="replace")[-3000:]
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(60)
    # the lake's query may trail PostgreSQL's (its tasks were the ones rescheduled): --once lands the rest
    rest = run_cli(["consumer/consumer.py", "--once"], env)
    assert rest.returncode == 0, rest.stderr[-3000:]


def test_a_worker_killed_mid_stream_costs_nothing(cluster_env, local_cluster, tmp_path):
    stack, cluster, settings = local_cluster
    spark = cluster_cli.spark_cluster(stack, cluster)
    csv = csv_slice(tmp_path / "slice.csv", 3000)  # ~45 s of sending: the job's first batch on the cluster is slow
    expected = expected_rows(csv)
    log = tmp_path / "consumer.log"
    job = producer = None
    try:
        job = start_job(cluster_env, log)
        wait_until(lambda: consumer_ready(cluster_env, job.pid), 300, "the job's first triggers")
        assert listening_addresses(job.pid) == {"127.0.0.1"}, "a driver on a loopback master listens beyond it"
        producer = start_slow_producer(csv, cluster_env, capture=True, tick_interval=0.04)
        wait_until(lambda: postgres_counts(cluster_env["DATABASE_URL"])["rows"] > 0, 120, "the first rows")

        assert producer.poll() is None, "the producer finished before the worker could be killed"
        worker = read_pid(spark.pid_file("worker-1"))
        os.killpg(worker, signal.SIGKILL)  # the worker and its executor: a lost machine
        _, err = producer.communicate(timeout=600)
        assert producer.returncode == 0, err[-2000:]
        finish(job, cluster_env, expected, log)
        assert "Lost executor" in log.read_text(errors="replace"), "the kill did not reach a running executor"
    finally:
        for proc in (producer, job):
            if proc is not None and proc.poll() is None:
                proc.kill()
        spark.start_one("worker-1")
        spark.wait_for_workers(2)
    assert_exactly_once(cluster_env, expected)


def test_a_broker_killed_mid_stream_costs_nothing_and_rejoins(cluster_env, local_cluster, tmp_path):
    stack, cluster, settings = local_cluster
    kafka = cluster_cli.kafka_cluster(stack, cluster)
    victim = kafka.nodes[1]
    csv = csv_slice(tmp_path / "slice.csv", 3000)  # ~45 s of sending: the job's first batch on the cluster is slow
    expected = expected_rows(csv)
    log = tmp_path / "consumer.log"
    job = producer = None
    try:
        job = start_job(cluster_env, log)
        wait_until(lambda: consumer_ready(cluster_env, job.pid), 300, "the job's first triggers")
        producer = start_slow_producer(csv, cluster_env, capture=True, tick_interval=0.04)
        wait_until(lambda: postgres_counts(cluster_env["DATABASE_URL"])["rows"] > 0, 120, "the first rows")

        assert producer.poll() is None, "the producer finished before the broker could be killed"
        os.kill(read_pid(victim.pid_file), signal.SIGKILL)
        time.sleep(2)
        _, err = producer.communicate(timeout=600)  # two of three replicas are enough for acks=all
        assert producer.returncode == 0, err[-2000:]
        finish(job, cluster_env, expected, log)
    finally:
        for proc in (producer, job):
            if proc is not None and proc.poll() is None:
                proc.kill()
        victim.start()
    assert records_in_topic(settings["KAFKA_BOOTSTRAP_SERVERS"], cluster_env["KAFKA_TOPIC"]) == sum(expected.values())
    assert_exactly_once(cluster_env, expected)
    wait_until(lambda: set(in_sync_replicas(settings["KAFKA_BOOTSTRAP_SERVERS"], cluster_env["KAFKA_TOPIC"]).values()) == {3},
               300, "the restarted broker back in every partition's in-sync replicas")
