"""How far the streaming job is behind its topic, per sink and partition: the pipeline panel's lag.

The arithmetic is Airflow's health report's, reused rather than redone: the topic's high watermark
(:mod:`stockpulse.kafka_offsets`) minus the offsets the job's Spark checkpoints committed
(``stockpulse.ops.checkpoints``). The dashboard layer may not import ``ops``
(docs/architecture.md), so the page's entry point hands this module the checkpoint reader and the
lag rule (``checkpoints.read_all`` and ``checkpoints.partition_lag``).

The answer is often out of reach from where the page runs: checkpoints on an object store or on
the Spark machine, a broker that is down, a topic not created yet. Each becomes an "unknown" with
its reason in one line, never a traceback. Broker calls get short timeouts and the answer (known
or not) is cached for :data:`LAG_TTL_SECONDS`, so a page refreshing every 5 s, for any number of
viewers, asks the broker at most that often and a dead broker stalls one refresh, not each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import streamlit as st

from stockpulse import kafka_offsets
from stockpulse.config import local_path

logger = logging.getLogger(__name__)

LAG_TTL_SECONDS = 10
BROKER_TIMEOUT_SECONDS = 3.0
"""Long enough for a busy broker on loopback, short enough that a dead one costs one slow refresh."""

LAG_COLUMNS = ("sink", "partition", "committed offset", "high watermark", "lag")

ProgressReader = Callable[[Path, str], Sequence]
"""``checkpoints.read_all(checkpoint_dir, topic)``: objects with ``sink`` and ``committed`` ({partition: offset})."""
LagRule = Callable[[dict[int, tuple[int, int]], dict[int, int]], dict[int, int]]
"""``checkpoints.partition_lag(watermarks, committed)``: {partition: records not yet committed}."""


@dataclass(frozen=True)
class Lag:
    """Per-partition lag of each sink, or why it is unknown (then ``partitions`` is empty)."""

    partitions: pd.DataFrame  # LAG_COLUMNS, by sink then partition
    unknown: str | None = None

    def by_sink(self) -> dict[str, int]:
        """Records each sink has still to commit."""
        return {sink: int(lag) for sink, lag in self.partitions.groupby("sink", sort=True)["lag"].sum().items()}

    @property
    def worst(self) -> int | None:
        """The slowest sink's lag: the job is only as far as its slowest query."""
        return max(self.by_sink().values(), default=None)


def unknown(reason: str) -> Lag:
    return Lag(pd.DataFrame(columns=list(LAG_COLUMNS)), reason)


def lag_table(marks: dict[int, tuple[int, int]], progress: Sequence, lag_of: LagRule) -> pd.DataFrame:
    """One row per sink and partition: the committed offset ("–" before the sink's first commit),
    the high watermark, and the lag by ``lag_of`` (the health report's rule)."""
    rows = []
    for sink in sorted(progress, key=lambda p: p.sink):
        lags = lag_of(marks, sink.committed)
        for partition in sorted(marks):
            committed = sink.committed.get(partition)
            rows.append((sink.sink, partition, "–" if committed is None else f"{committed:,}",
                         marks[partition][1], lags[partition]))
    return pd.DataFrame(rows, columns=list(LAG_COLUMNS))


def read_lag(bootstrap: str, topic: str, checkpoint_dir: str, read_progress: ProgressReader,
             lag_of: LagRule, timeout: float = BROKER_TIMEOUT_SECONDS) -> Lag:
    """The lag now, or :func:`unknown` with the reason; never raises."""
    directory = local_path(checkpoint_dir)
    if directory is None:
        return unknown(f"the checkpoints are in {checkpoint_dir}; the page reads only checkpoints on its own disk")
    if not directory.is_dir():
        return unknown(f"no checkpoints at {directory} on this machine (the job writes them there once it "
                       "runs; a dashboard on another machine than the job cannot see them)")
    try:
        progress = read_progress(directory, topic)
    except Exception as exc:  # noqa: BLE001 - a half-written or foreign file must not break the page
        return _logged(unknown(f"cannot read the checkpoints at {directory}: {_one_line(exc)}"))
    try:
        partitions = kafka_offsets.topic_partitions(bootstrap, topic, timeout=timeout)
        if not partitions:
            return unknown(f"topic {topic} does not exist on {bootstrap} yet")
        marks = kafka_offsets.watermarks(bootstrap, topic, partitions, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaOffsetsError, or whatever the client raised
        return _logged(unknown(f"the broker at {bootstrap} did not answer: {_one_line(exc)}"))
    return Lag(lag_table(marks, progress, lag_of))


@st.cache_data(ttl=LAG_TTL_SECONDS, show_spinner=False)
def consumer_lag(bootstrap: str, topic: str, checkpoint_dir: str, _read_progress: ProgressReader,
                 _lag_of: LagRule) -> Lag:
    """:func:`read_lag`, cached (an unknown too: that is what spares a dead broker). The reader
    and the rule are not part of the cache key (the leading underscore): they never change."""
    return read_lag(bootstrap, topic, checkpoint_dir, _read_progress, _lag_of)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _logged(lag: Lag) -> Lag:
    logger.warning("consumer lag unknown: %s", lag.unknown)
    return lag
