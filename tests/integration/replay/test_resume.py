"""Kill the producer with SIGKILL mid-replay; ``--resume`` then sends exactly the rows that are missing."""

from __future__ import annotations

import os
import signal
from collections import Counter

from stockpulse.kafka_offsets import newest_records
from stockpulse.replay.csv_rows import TickRow, read_rows
from stockpulse.replay.resume import key_partition, record_position
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, produced_rows, records_in_topic as landed, start_slow_producer, wait_for_records


def topic_contents(broker: str, topic: str) -> dict[int, list[tuple[str, object]]]:
    records = newest_records(broker, topic, window=10**9)
    return {p: [record_position(value) for _key, value in rows] for p, rows in records.items()}


def test_sigkill_mid_replay_then_resume_sends_each_row_once(pipeline_env, broker, topic, tmp_path):
    csv = csv_slice(tmp_path / "slice.csv", 1500)
    expected = Counter((r.index, r.date) for r in read_rows(csv) if isinstance(r, TickRow))

    producer = start_slow_producer(csv, pipeline_env)
    try:
        wait_for_records(broker, topic, 200, producer)
        os.kill(producer.pid, signal.SIGKILL)
        producer.wait(30)
    finally:
        if producer.poll() is None:
            producer.kill()
    before = landed(broker, topic)
    assert 0 < before < sum(expected.values()), "the kill should have landed mid-replay"

    resumed = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume"], pipeline_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{before} rows skipped as already landed" in resumed.stderr

    contents = topic_contents(broker, topic)
    found = Counter(position for positions in contents.values() for position in positions)
    assert found == expected, "every CSV row exactly once in the topic"
    for partition, positions in contents.items():
        assert all(key_partition(index.encode(), len(contents)) == partition for index, _ in positions)

    again = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume"], pipeline_env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sent 0 ticks (0 rows)" in again.stderr
    assert landed(broker, topic) == sum(expected.values())


def test_resume_reads_its_own_topic_only(pipeline_env, broker, topic, database_url, tmp_path):
    """ticks_raw full of another topic's rows, the producer's topic empty: --resume sends everything."""
    from stockpulse.ops.services.broker import ensure_topic

    csv = csv_slice(tmp_path / "slice.csv", 100)
    rows = sum(1 for r in read_rows(csv) if isinstance(r, TickRow))
    assert run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], pipeline_env).returncode == 0
    other = f"{topic}_other"
    ensure_topic(broker, other, 3)
    resumed = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume",
                       "--topic", other], pipeline_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert produced_rows(resumed.stderr) == rows
    assert landed(broker, other) == rows and landed(broker, topic) == rows
