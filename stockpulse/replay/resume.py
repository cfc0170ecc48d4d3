"""Where a killed replay left off, worked out from what actually landed in the topic.

Why from the topic and not from a progress file: a file written by the producer says what it
*sent*, while a SIGKILL drops whatever was still in the client's buffers. The topic says what
landed. Two facts make the topic's tail enough:

- every index is one key, and the producer hashes a key to one partition (the Java client's
  murmur2 rule, which kafka-python follows), so one index's rows all live in one partition;
- the producer is idempotent, so within a partition what landed is a prefix of what was sent,
  in send order, and the producer sends in trading-date order.

So for an index seen in its partition's tail, everything up to its last landed date is in the
topic. For an index not seen there, every row it has dated before the tail's last date was sent
before that last record, hence landed (and is older than the tail). Rows dated on or after it
still have to go. An empty partition has received nothing.

The topic is durable (the embedded broker keeps its log on disk, a real cluster replicates it),
so it is the only witness needed: the sinks are not consulted, and what another topic or an old
run left in ``ticks_raw`` cannot make the producer skip anything. Pure functions only; reading
the tail is :func:`stockpulse.kafka_offsets.newest_records`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Mapping

from stockpulse.replay.csv_rows import TickRow

TAIL_WINDOW = 256
"""Records read from the end of each partition; many ticks' worth for a handful of indices."""


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client and kafka-python's default partitioner pick for ``key``."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def record_position(value: bytes | None) -> tuple[str, date] | None:
    """(index, trading date) of a tick message, or None for anything that is not one."""
    if not value:
        return None
    try:
        message = json.loads(value)
        return str(message["index"]), date.fromisoformat(message["date"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class PartitionTail:
    """What the newest records of one partition say: its last trading date and each index's."""

    last_date: date | None = None
    last_by_index: Mapping[str, date] = field(default_factory=dict)


def summarise_tail(values: Iterable[bytes | None]) -> PartitionTail:
    """Fold one partition's newest record values (oldest first) into a :class:`PartitionTail`."""
    last_date, last_by_index = None, {}
    for value in values:
        position = record_position(value)
        if position is None:
            continue
        index, day = position
        last_date = day
        last_by_index[index] = day
    return PartitionTail(last_date, last_by_index)


@dataclass(frozen=True)
class ResumePoint:
    """Decides, row by row, whether a row of the CSV already landed in the topic."""

    tails: Mapping[int, PartitionTail]

    @property
    def partitions(self) -> int:
        return len(self.tails)

    def landed(self, row: TickRow) -> bool:
        tail = self.tails.get(key_partition(row.index.encode(), self.partitions))
        if tail is None or tail.last_date is None:
            return False
        seen = tail.last_by_index.get(row.index)
        if seen is not None:
            return row.date <= seen
        return row.date < tail.last_date

    @property
    def empty(self) -> bool:
        return all(t.last_date is None for t in self.tails.values())

    def describe(self) -> str:
        """One line for the log: where the topic and the table stand."""
        if self.empty:
            return "the topic holds no ticks yet: starting from the beginning"
        newest = max(t.last_date for t in self.tails.values() if t.last_date is not None)
        return f"the topic holds ticks up to {newest.isoformat()}: sending only the rows that have not landed"


def resume_point(records: Mapping[int, list[tuple]]) -> ResumePoint:
    """A :class:`ResumePoint` from ``{partition: [(key, value), ...]}`` (oldest first)."""
    return ResumePoint({p: summarise_tail(value for _key, value in rows) for p, rows in sorted(records.items())})
