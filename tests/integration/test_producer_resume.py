"""Kill the producer with SIGKILL mid-replay; ``--resume`` then sends exactly the rows that are missing."""

from __future__ import annotations

import os
import signal
from collections import Counter

from stockpulse.kafka_offsets import newest_records
from stockpulse.replay import TickRow, read_rows
from stockpulse.resume import key_partition, record_position
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, records_in_topic as landed, start_slow_producer, wait_for_records


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


def test_resume_after_the_broker_lost_its_messages_continues_from_ticks_raw(pipeline_env, broker, topic, database_url,
                                                                            tmp_path):
    """`make down` + `make up` with the in-memory broker: an empty topic, but ticks_raw holds the first
    rows. --resume must send only the rest, or both sinks would get the first rows twice."""
    import psycopg

    csv = csv_slice(tmp_path / "slice.csv", 300)
    rows = [r for r in read_rows(csv) if isinstance(r, TickRow)]
    dates = sorted({r.date for r in rows})
    cut = dates[len(dates) // 2]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for offset, r in enumerate(r for r in rows if r.date <= cut):
            conn.execute(
                "INSERT INTO ticks_raw (stream_ts, date, index, close, volume, trade_value, kafka_topic, "
                "kafka_partition, kafka_offset, kafka_timestamp) VALUES (now(), %s, %s, %s, %s, %s, 'old', 0, %s, now())",
                (r.date, r.index, r.close, r.volume, r.close * r.volume, offset),
            )
    already = sum(1 for r in rows if r.date <= cut)

    resumed = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume"], pipeline_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{already} rows skipped as already landed" in resumed.stderr
    contents = topic_contents(broker, topic)
    found = Counter(position for positions in contents.values() for position in positions)
    assert found == Counter((r.index, r.date) for r in rows if r.date > cut)


def test_resume_with_an_unreachable_database_falls_back_to_the_topic(pipeline_env, broker, topic, tmp_path):
    from tests.conftest import free_port

    csv = csv_slice(tmp_path / "slice.csv", 50)
    env = {**pipeline_env, "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/stocks"}
    resumed = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "cannot read ticks_raw" in resumed.stderr and "Traceback" not in resumed.stderr
    assert landed(broker, topic) == sum(1 for r in read_rows(csv) if isinstance(r, TickRow))
