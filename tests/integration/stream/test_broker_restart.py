"""``kill -9`` of the Apache Kafka broker mid-stream, then a restart: nothing lost, nothing doubled.

The broker's log is on disk, so a killed broker comes back with every acknowledged record. The
producer (idempotent, ``acks=all``) and the streaming job either ride the outage out or exit with
one line, in which case they are started again the way the supervisor would (the producer with
``--resume``). Either way every CSV row must end up exactly once in the topic, in PostgreSQL and
in the lake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.db import connect
from stockpulse.replay.csv_rows import TickRow, read_rows
from stockpulse.ops.services.broker import ensure_topic
from tests.conftest import embedded_kafka, run_cli
from tests.integration.helpers import (
    consumer_ready, csv_slice, lake_table, listening_addresses, postgres_counts, records_in_topic,
    start_slow_producer, wait_until,
)

pytestmark = pytest.mark.slow


def one_line_error(stderr: str) -> bool:
    return "Traceback" not in stderr and bool(stderr.strip())


def test_broker_sigkill_mid_stream_loses_and_doubles_nothing(pipeline_env, tmp_path):
    server = embedded_kafka(tmp_path / "kafka")
    server.start()
    env = {**pipeline_env, "KAFKA_BOOTSTRAP_SERVERS": server.bootstrap, "LAKE_PARTITION_BY": "index"}
    topic, url = env["KAFKA_TOPIC"], env["DATABASE_URL"]
    csv = csv_slice(tmp_path / "slice.csv", 2500)
    expected = Counter((r.index, r.date) for r in read_rows(csv) if isinstance(r, TickRow))
    consumer_log = (tmp_path / "consumer.log").open("wb")
    producer = consumer = None
    try:
        ensure_topic(server.bootstrap, topic, 3)
        consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                    stdout=consumer_log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: consumer_ready(env, consumer.pid), 300, "the consumer's first triggers")
        assert listening_addresses(consumer.pid) == {"127.0.0.1"}, "the job listens beyond loopback"
        assert listening_addresses(server_pid(server)) == {"127.0.0.1"}, "the broker listens beyond loopback"
        producer = start_slow_producer(csv, env, capture=True, tick_interval=0.02)
        wait_until(lambda: postgres_counts(url)["rows"] > 0, 120, "the first rows in PostgreSQL")
        assert producer.poll() is None, "the producer finished before the broker could be killed"

        os.kill(server_pid(server), signal.SIGKILL)
        time.sleep(3)
        server.start()

        _, producer_err = producer.communicate(timeout=600)
        if producer.returncode != 0:  # it gave up during the outage: one line, then --resume
            assert one_line_error(producer_err), producer_err[-2000:]
            resumed = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume"], env)
            assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert records_in_topic(server.bootstrap, topic) == sum(expected.values()), "topic: lost or doubled rows"

        if consumer.poll() is None:  # it rode the outage out: let it land the rest, then stop it
            wait_until(lambda: postgres_counts(url)["rows"] >= sum(expected.values()), 300, "the rest of the rows")
            os.killpg(consumer.pid, signal.SIGTERM)
            consumer.wait(60)
        finished = run_cli(["consumer/consumer.py", "--once"], env)
        assert finished.returncode == 0, finished.stderr[-3000:]
    finally:
        for proc in (producer, consumer):
            if proc is not None and proc.poll() is None:
                proc.kill()
        consumer_log.close()
        server.stop()

    with connect(url) as conn:
        landed = Counter(conn.execute('SELECT "index", "date" FROM ticks_raw').fetchall())
    assert landed == expected
    assert postgres_counts(url)["bad_trade_value"] == 0
    table = lake_table(Path(env["LAKE_PATH"]))
    assert Counter(zip(table["index"].to_pylist(), table["date"].to_pylist())) == expected


def server_pid(server) -> int:
    return int(server.pid_file.read_text().split()[0])
