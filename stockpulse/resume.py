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

The topic alone forgets: the embedded broker keeps messages in memory, so after `make down` and
`make up` it is empty although the sinks hold the first half of the replay. The consumer commits
each partition in offset order, hence in trading-date order per index, so the newest date of an
index in ``ticks_raw`` also means "everything before it landed": a row is skipped when the topic
*or* the table says it landed. Pure functions only; reading the tail is
:func:`stockpulse.kafka_offsets.newest_records`, reading the table :data:`LANDED_DATES_SQL`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Mapping

from stockpulse.replay import TickRow

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
    """Decides, row by row, whether a row of the CSV already landed (in the topic or in ticks_raw)."""

    tails: Mapping[int, PartitionTail]
    sink_last: Mapping[str, date] = field(default_factory=dict)
    """Each index's newest trading date already in ``ticks_raw`` (empty when not consulted)."""

    @property
    def partitions(self) -> int:
        return len(self.tails)

    def landed(self, row: TickRow) -> bool:
        in_sink = self.sink_last.get(row.index)
        if in_sink is not None and row.date <= in_sink:
            return True
        tail = self.tails.get(key_partition(row.index.encode(), self.partitions))
        if tail is None or tail.last_date is None:
            return False
        seen = tail.last_by_index.get(row.index)
        if seen is not None:
            return row.date <= seen
        return row.date < tail.last_date

    @property
    def empty(self) -> bool:
        return all(t.last_date is None for t in self.tails.values()) and not self.sink_last

    def describe(self) -> str:
        """One line for the log: where the topic and the table stand."""
        if self.empty:
            return "neither the topic nor ticks_raw holds ticks yet: starting from the beginning"
        parts = []
        topic_dates = [t.last_date for t in self.tails.values() if t.last_date is not None]
        if topic_dates:
            parts.append(f"the topic holds ticks up to {max(topic_dates).isoformat()}")
        if self.sink_last:
            parts.append(f"ticks_raw holds ticks up to {max(self.sink_last.values()).isoformat()}")
        return " and ".join(parts) + ": sending only the rows that have not landed"


def resume_point(records: Mapping[int, list[tuple]], sink_last: Mapping[str, date] | None = None) -> ResumePoint:
    """A :class:`ResumePoint` from ``{partition: [(key, value), ...]}`` (oldest first) and, when
    known, each index's newest date in ``ticks_raw``."""
    tails = {p: summarise_tail(value for _key, value in rows) for p, rows in sorted(records.items())}
    return ResumePoint(tails, dict(sink_last or {}))


LANDED_DATES_SQL = 'SELECT "index", max("date") FROM ticks_raw GROUP BY "index"'
"""Each index's newest trading date in the table: what :attr:`ResumePoint.sink_last` holds."""

