"""Steps the Airflow tests share: run Airflow's CLI, produce ticks, count what landed, wait."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockpulse.config import ConsumerSettings, StackSettings
from stockpulse.db import connect
from stockpulse.ops import supervisor
from stockpulse.ops.services import airflow as airflow_service

ROOT = Path(__file__).resolve().parents[3]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def paths_for(env: dict[str, str]) -> supervisor.ConsumerPaths:
    """The consumer's files (pid, log, job lock, heartbeat) for the pipeline ``env`` describes."""
    return supervisor.ConsumerPaths.of(StackSettings.from_env(env), ConsumerSettings.from_env(env))


def airflow_cli(args: list[str], env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def produce(env: dict[str, str], ticks: int) -> None:
    result = subprocess.run([sys.executable, "producer/producer.py", "--tick-interval", "0", "--limit", str(ticks),
                             "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def start_producer(env: dict[str, str], csv: Path, tick_interval: float) -> subprocess.Popen:
    """The producer as a background process: ticks keep arriving while the test acts."""
    return subprocess.Popen([sys.executable, "producer/producer.py", "--csv", str(csv), "--tick-interval",
                             str(tick_interval), "--no-progress"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def topic_size(env: dict[str, str]) -> int:
    """Messages on the test topic (the sum of its high watermarks)."""
    from stockpulse.kafka_offsets import describe_topic, watermarks

    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"]
    _, partitions = describe_topic(bootstrap, topic)
    return sum(high for _, high in watermarks(bootstrap, topic, partitions).values())


def row_counts(url: str) -> tuple[int, int]:
    """(rows in ticks_raw, distinct Kafka records among them)."""
    with connect(url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM ticks_raw").fetchone()


def wait_for(condition, what: str, timeout: float = 900, interval: float = 2.0):
    """Poll until ``condition()`` is truthy; generous, because Spark shares two cores with others."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout:.0f} s)")
        time.sleep(interval)


def run_dag_test(env: dict[str, str], conf: dict | None = None) -> subprocess.CompletedProcess:
    """``airflow dags test stockpulse_pipeline``: one whole run in this process tree, no scheduler."""
    return airflow_cli(["dags", "test", airflow_service.DAG_ID, "-c", json.dumps(conf or {})], env)
