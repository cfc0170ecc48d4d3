"""What the streaming job has committed, read from its Spark checkpoints, and how far it lags.

Spark writes ``offsets/<batchId>`` when it plans a batch and ``commits/<batchId>`` when the batch
is done, so only a batch id present in both is really processed. The offset file's third line is
the source offset JSON: ``{"<topic>": {"0": next_offset, ...}, "topicIds": {...}}`` (the official
Kafka source's shape, plus topic ids from the project's reader).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from stockpulse.config import SINKS

logger = logging.getLogger(__name__)


def batch_ids(directory: Path) -> set[int]:
    """Batch ids written in a checkpoint log directory (Spark's ``.N.crc`` files are skipped)."""
    try:
        return {int(p.name) for p in directory.iterdir() if p.name.isdigit()}
    except FileNotFoundError:
        return set()


def latest_committed_batch(offset_ids: set[int], commit_ids: set[int]) -> int | None:
    """The newest batch both planned and committed; None before the first commit."""
    done = offset_ids & commit_ids
    return max(done) if done else None


def parse_offset_log(text: str, topic: str) -> dict[int, int]:
    """{partition: next offset} for ``topic`` from an ``offsets/<batchId>`` file's text."""
    for line in text.splitlines()[2:]:
        line = line.strip()
        if not line or line == "-":
            continue
        offsets = json.loads(line)
        if isinstance(offsets, dict) and topic in offsets:
            return {int(p): int(o) for p, o in offsets[topic].items()}
    return {}


def partition_lag(watermarks: dict[int, tuple[int, int]], committed: dict[int, int]) -> dict[int, int]:
    """Records on the broker not yet committed, per partition.

    A partition never committed lags from its low watermark (the job starts at ``earliest``). A
    committed offset beyond the high watermark means the topic was recreated or its log wiped; the job then
    re-reads from the start, so that partition lags by everything it holds.
    """
    lag = {}
    for partition, (low, high) in watermarks.items():
        position = committed.get(partition, low)
        if position > high:
            position = low
        lag[partition] = max(high - max(position, low), 0)
    return lag


@dataclass(frozen=True)
class SinkProgress:
    """How far one query of the job has got: its committed offsets and when it last committed."""

    sink: str
    batch_id: int | None
    committed: dict[int, int]
    committed_at: float | None  # epoch seconds of the latest commit file, None before the first


def read_progress(checkpoint_dir: Path, sink: str, topic: str) -> SinkProgress:
    """The latest committed batch of ``<checkpoint_dir>/<sink>`` for ``topic``."""
    root = checkpoint_dir / sink
    batch = latest_committed_batch(batch_ids(root / "offsets"), batch_ids(root / "commits"))
    if batch is None:
        return SinkProgress(sink, None, {}, None)
    committed = parse_offset_log((root / "offsets" / str(batch)).read_text(), topic)
    return SinkProgress(sink, batch, committed, (root / "commits" / str(batch)).stat().st_mtime)


def read_all(checkpoint_dir: Path, topic: str) -> list[SinkProgress]:
    return [read_progress(checkpoint_dir, sink, topic) for sink in SINKS]
