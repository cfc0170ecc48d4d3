"""The embedded broker keeps messages in memory: a restart recreates the topic empty, with a new id.

A checkpoint may then hold a batch that was planned against the old topic but never committed
(the job was stopped mid-batch). Spark replays such a batch first; its offsets name records that
no longer exist. The job must neither wait for them forever nor read the new topic's records in
their place: with failOnDataLoss=false it skips the lost batch and reads the new topic from its
start; with the default it stops at once, saying what happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockpulse.replay import TickRow, read_rows
from stockpulse.services.broker import ensure_topic, start_broker, stop_broker
from stockpulse.services.processes import free_port
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, lake_table, postgres_counts

pytestmark = pytest.mark.slow


def plant_planned_batch(checkpoint: Path, topic: str, ahead: int) -> None:
    """Write batch n+1's offsets (planned, never committed), ``ahead`` records past batch n."""
    offsets = checkpoint / "offsets"
    last = max(int(p.name) for p in offsets.iterdir() if p.name.isdigit())
    lines = (offsets / str(last)).read_text().splitlines()
    source = json.loads(lines[-1])
    source[topic] = {p: o + ahead for p, o in source[topic].items()}
    (offsets / str(last + 1)).write_text("\n".join([*lines[:-1], json.dumps(source)]))


def test_a_batch_planned_before_a_broker_restart_is_skipped_not_waited_for(pipeline_env, tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    state = tmp_path / "broker"
    topic = pipeline_env["KAFKA_TOPIC"]
    env = {**pipeline_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LAKE_PARTITION_BY": "index"}
    first, second = csv_slice(tmp_path / "first.csv", 300), csv_slice(tmp_path / "second.csv", 120)
    expected = sum(1 for path in (first, second) for r in read_rows(path) if isinstance(r, TickRow))

    start_broker("127.0.0.1", port, state)
    try:
        ensure_topic(bootstrap, topic, 3)
        assert run_cli(["producer/producer.py", "--csv", str(first), "--tick-interval", "0"], env).returncode == 0
        done = run_cli(["consumer/consumer.py", "--once"], env)
        assert done.returncode == 0, done.stderr[-3000:]
        for sink in ("parquet", "postgres"):
            plant_planned_batch(Path(env["CHECKPOINT_DIR"]) / sink, topic, ahead=1000)
    finally:
        stop_broker(state)

    start_broker("127.0.0.1", port, state)  # same address, empty topic with a new id
    try:
        ensure_topic(bootstrap, topic, 3)
        assert run_cli(["producer/producer.py", "--csv", str(second), "--tick-interval", "0"], env).returncode == 0

        refused = run_cli(["consumer/consumer.py", "--once"], env)
        assert refused.returncode != 0
        assert "created again" in refused.stderr and "timed out" not in refused.stderr

        resumed = run_cli(["consumer/consumer.py", "--once"], {**env, "FAIL_ON_DATA_LOSS": "false"})
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        stop_broker(state)

    counts = postgres_counts(env["DATABASE_URL"])
    assert counts["rows"] == expected and counts["bad_trade_value"] == 0
    assert lake_table(Path(env["LAKE_PATH"])).num_rows == expected
