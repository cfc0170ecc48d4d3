"""The consumer lag on the pipeline panel: the health report's rule, and "unknown" with a reason
whenever the checkpoints or the broker are out of reach (never an exception)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockpulse import kafka_offsets
from stockpulse.dashboard import lag
from stockpulse.ops import checkpoints
from stockpulse.ops.checkpoints import SinkProgress

MARKS = {0: (0, 10), 1: (0, 7), 2: (5, 5)}
PROGRESS = [SinkProgress("postgres", 3, {0: 10, 1: 4, 2: 5}, 1.0), SinkProgress("parquet", None, {}, None)]


def test_lag_table_per_sink_and_partition_uses_the_health_rule():
    table = lag.lag_table(MARKS, PROGRESS, checkpoints.partition_lag)
    assert table.values.tolist() == [
        ["parquet", 0, "–", 10, 10],  # never committed: lags from the low watermark
        ["parquet", 1, "–", 7, 7],
        ["parquet", 2, "–", 5, 0],
        ["postgres", 0, "10", 10, 0],
        ["postgres", 1, "4", 7, 3],
        ["postgres", 2, "5", 5, 0],
    ]
    known = lag.Lag(table)
    assert known.by_sink() == {"parquet": 17, "postgres": 3}
    assert known.worst == 17


@pytest.fixture
def broker(monkeypatch):
    """The broker as kafka_offsets sees it; set ``answer`` to an exception to make it fail."""
    state = {"partitions": [0, 1, 2], "answer": None, "timeouts": []}

    def topic_partitions(bootstrap, topic, timeout):
        state["timeouts"].append(timeout)
        if state["answer"]:
            raise state["answer"]
        return state["partitions"]

    def watermarks(bootstrap, topic, partitions, timeout):
        return {p: MARKS[p] for p in partitions}

    monkeypatch.setattr(kafka_offsets, "topic_partitions", topic_partitions)
    monkeypatch.setattr(kafka_offsets, "watermarks", watermarks)
    return state


def read(checkpoint_dir, read_progress=lambda directory, topic: PROGRESS):
    return lag.read_lag("k:9092", "ticks", str(checkpoint_dir), read_progress, checkpoints.partition_lag)


def test_known_lag(tmp_path, broker):
    found = read(tmp_path)
    assert found.unknown is None and found.by_sink() == {"parquet": 17, "postgres": 3}
    assert broker["timeouts"] == [lag.BROKER_TIMEOUT_SECONDS]  # short: a dead broker costs one slow refresh


def test_checkpoints_on_an_object_store_are_unknown(broker):
    found = read("s3a://bucket/chk")
    assert found.unknown.startswith("the checkpoints are in s3a://bucket/chk")
    assert found.partitions.empty and found.worst is None


def test_no_checkpoints_on_this_machine_is_unknown(tmp_path, broker):
    assert "no checkpoints at" in read(tmp_path / "elsewhere").unknown


def test_an_unreadable_checkpoint_is_unknown(tmp_path, broker):
    def broken(directory: Path, topic: str):
        raise ValueError("Expecting value: line 1 column 1 (char 0)\nmore")

    found = read(tmp_path, broken)
    assert found.unknown == f"cannot read the checkpoints at {tmp_path}: Expecting value: line 1 column 1 (char 0)"


def test_a_broker_that_does_not_answer_is_unknown(tmp_path, broker):
    broker["answer"] = kafka_offsets.KafkaOffsetsError("Kafka at k:9092 does not answer: Local: Timed out")
    assert read(tmp_path).unknown == "the broker at k:9092 did not answer: Kafka at k:9092 does not answer: " \
                                     "Local: Timed out"
    broker["answer"] = RuntimeError("anything else the client raises")
    assert "anything else the client raises" in read(tmp_path).unknown


def test_a_missing_topic_is_unknown(tmp_path, broker):
    broker["partitions"] = []
    assert read(tmp_path).unknown == "topic ticks does not exist on k:9092 yet"
