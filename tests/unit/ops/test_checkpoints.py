"""Reading Spark's offset and commit logs, and lag per partition."""

from __future__ import annotations

import json

from stockpulse.ops.checkpoints import (
    latest_committed_batch, parse_offset_log, partition_lag, read_all, read_progress,
)

TOPIC = "stock_ticks"


def offset_text(offsets: dict[str, int]) -> str:
    source = {TOPIC: offsets, "topicIds": {TOPIC: "AaIBQrVRfiKOBUZhy+Rolw"}}
    return "v1\n" + json.dumps({"batchWatermarkMs": 0}) + "\n" + json.dumps(source)


def test_only_a_batch_both_planned_and_committed_counts():
    assert latest_committed_batch({0, 1, 2}, {0, 1}) == 1
    assert latest_committed_batch({0}, set()) is None


def test_offset_log_gives_next_offset_per_partition():
    assert parse_offset_log(offset_text({"0": 1200, "1": 0, "2": 7}), TOPIC) == {0: 1200, 1: 0, 2: 7}
    assert parse_offset_log(offset_text({"0": 5}), "other_topic") == {}


def test_lag_is_high_watermark_minus_committed():
    marks = {0: (0, 1500), 1: (0, 10), 2: (0, 0)}
    assert partition_lag(marks, {0: 1200, 1: 10, 2: 0}) == {0: 300, 1: 0, 2: 0}
    assert partition_lag(marks, {}) == {0: 1500, 1: 10, 2: 0}  # never committed: from the start
    assert partition_lag({0: (0, 40)}, {0: 900}) == {0: 40}  # broker restarted: read again from its start


def test_progress_from_a_checkpoint_directory(tmp_path):
    root = tmp_path / "postgres"
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    for batch, offsets in ((0, {"0": 10}), (1, {"0": 25}), (2, {"0": 40})):
        (root / "offsets" / str(batch)).write_text(offset_text(offsets))
        (root / "offsets" / f".{batch}.crc").write_text("x")
    for batch in (0, 1):
        (root / "commits" / str(batch)).write_text("v1\n{}\n")
    progress = read_progress(tmp_path, "postgres", TOPIC)
    assert (progress.batch_id, progress.committed) == (1, {0: 25})
    assert progress.committed_at == (root / "commits" / "1").stat().st_mtime
    parquet = [p for p in read_all(tmp_path, TOPIC) if p.sink == "parquet"][0]
    assert (parquet.batch_id, parquet.committed, parquet.committed_at) == (None, {}, None)
