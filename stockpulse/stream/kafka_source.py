"""A Kafka source for Spark Structured Streaming, written on Spark's Python Data Source API.

Why it exists: the official ``format("kafka")`` connector is a jar from the Maven registry, and
a machine that cannot reach the registry still deserves a working pipeline (``KAFKA_SOURCE=python``,
or the fallback of ``auto``). This reader gives the same row shape (key, value, topic, partition,
offset, timestamp, timestampType), the same offset JSON (``{"topic": {"0": 42}}``) kept in Spark's
checkpoint, and the options users know: ``kafka.bootstrap.servers``, ``subscribe``,
``startingOffsets``, ``maxOffsetsPerTrigger``, ``failOnDataLoss``.

Client: confluent-kafka (librdkafka) in both driver and tasks; it consumed ~3.5x faster than
kafka-python on these machines.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Iterator

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from stockpulse.kafka_offsets import KafkaOffsetsError, make_consumer as _consumer, describe_topic, watermarks

logger = logging.getLogger(__name__)

SOURCE_NAME = "stockpulse_kafka"

KAFKA_ROW_SCHEMA = (
    "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, "
    "timestamp TIMESTAMP, timestampType INT"
)
"""Identical to the official Kafka source, so everything downstream is source-agnostic."""


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([
        ("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()), ("partition", pa.int32()),
        ("offset", pa.int64()), ("timestamp", pa.timestamp("us", tz="UTC")), ("timestampType", pa.int32()),
    ])


KAFKA_ARROW_SCHEMA = _arrow_schema()

EARLIEST, LATEST = -2, -1
SPLIT_SIZE = 50_000
"""Offsets per Spark task; a large backlog on one partition is read by several tasks."""


class KafkaSourceError(KafkaOffsetsError):
    """Raised inside Spark; the message says what happened and what the user can do."""


@dataclass(frozen=True)
class OffsetRange(InputPartition):
    """One Spark task's share: offsets [start, end) of one Kafka partition."""

    topic: str
    partition: int
    start: int
    end: int


def plan_ranges(topic: str, start: dict[int, int], end: dict[int, int], split: int = SPLIT_SIZE) -> list[OffsetRange]:
    """Split each partition's [start, end) into ranges of at most ``split`` offsets."""
    ranges = []
    for partition in sorted(end):
        lo, hi = start.get(partition, 0), end[partition]
        while lo < hi:
            ranges.append(OffsetRange(topic, partition, lo, min(lo + split, hi)))
            lo += split
    return ranges


def cap_offsets(start: dict[int, int], latest: dict[int, int], max_rows: int) -> dict[int, int]:
    """Advance at most ``max_rows`` offsets in total, shared in proportion to each backlog.

    Every partition with a backlog advances by at least one offset so none is starved.
    """
    backlog = {p: max(0, latest[p] - start.get(p, 0)) for p in latest}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(latest)
    capped = {}
    for p, lag in backlog.items():
        share = max(1, lag * max_rows // total) if lag else 0
        capped[p] = start.get(p, 0) + min(lag, share)
    return capped


def parse_starting_offsets(spec: str, topic: str) -> dict[int, int] | str:
    """``earliest``/``latest`` as given, or the official JSON form parsed to {partition: offset}."""
    value = spec.strip()
    if value.lower() in ("earliest", "latest"):
        return value.lower()
    try:
        parsed = json.loads(value)
        return {int(p): int(o) for p, o in parsed[topic].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KafkaSourceError(
            f"startingOffsets={spec!r}: use earliest, latest or JSON like "
            f'{{"{topic}": {{"0": 42, "1": -2}}}} (-2 earliest, -1 latest)'
        ) from None


class KafkaDataSource(DataSource):
    """``spark.readStream.format("stockpulse_kafka")``: see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return KAFKA_ROW_SCHEMA

    def streamReader(self, schema) -> "KafkaStreamReader":
        return KafkaStreamReader(self.options)


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets are ``{topic: {"partition": next_offset}}``, the official source's JSON shape, plus
    ``{"topicIds": {topic: id}}`` so a topic that was deleted and recreated (offsets restarting at
    0) is noticed even when the new topic already holds more messages than the checkpoint."""

    def __init__(self, options) -> None:
        # ``options`` is case-insensitive; dict(options) would lower-case the keys, so read from it.
        self.bootstrap = options.get("kafka.bootstrap.servers")
        self.topic = options.get("subscribe")
        if not self.bootstrap or not self.topic:
            raise KafkaSourceError("options kafka.bootstrap.servers and subscribe are required")
        self.starting = parse_starting_offsets(options.get("startingOffsets", "earliest"), self.topic)
        self.max_offsets = int(options.get("maxOffsetsPerTrigger", "0") or 0)
        self.fail_on_data_loss = str(options.get("failOnDataLoss", "true")).lower() != "false"
        self.poll_timeout = float(options.get("kafkaConsumer.pollTimeoutMs", "120000")) / 1000
        self.target: dict[int, int] | None = None
        self._seen_topic_id: str | None = None  # the id latestOffset last saw: plans made since are current

    # -- offsets ------------------------------------------------------------------------------
    def _wrap(self, offsets: dict[int, int], topic_id: str) -> dict:
        return {self.topic: {str(p): o for p, o in sorted(offsets.items())}, "topicIds": {self.topic: topic_id}}

    def _topic_id(self, offset: dict) -> str | None:
        return offset.get("topicIds", {}).get(self.topic)

    def _unwrap(self, offset: dict) -> dict[int, int]:
        return {int(p): int(o) for p, o in offset.get(self.topic, {}).items()}

    def initialOffset(self) -> dict:
        topic_id, partitions = describe_topic(self.bootstrap, self.topic)
        marks = watermarks(self.bootstrap, self.topic, partitions)
        if self.starting == "earliest":
            return self._wrap({p: low for p, (low, _) in marks.items()}, topic_id)
        if self.starting == "latest":
            return self._wrap({p: high for p, (_, high) in marks.items()}, topic_id)
        chosen = {}
        for p, (low, high) in marks.items():
            wanted = self.starting.get(p, EARLIEST)
            chosen[p] = low if wanted == EARLIEST else high if wanted == LATEST else wanted
        return self._wrap(chosen, topic_id)

    def _check_loss(self, start: dict[int, int], marks: dict[int, tuple[int, int]], recreated: bool) -> dict[int, int]:
        """Start positions after data-loss handling: fail, or skip to what the broker still has."""
        if recreated:
            problem = (f"topic {self.topic} was deleted and created again since the last batch (its id changed; "
                       "or its log directory was wiped)")
            if self.fail_on_data_loss:
                raise KafkaSourceError(
                    problem + ". Set FAIL_ON_DATA_LOSS=false to read the new topic from its start, or run "
                    "'python clear_outputs.py --yes' to start over"
                )
            logger.warning("%s; reading the new topic from its earliest offsets (failOnDataLoss=false)", problem)
            return {p: low for p, (low, _) in marks.items()}
        adjusted = dict(start)
        for p, (low, high) in marks.items():
            if p not in start:
                adjusted[p] = low  # a partition added since the last batch: read it from the start
                continue
            if start[p] > high:
                problem = (f"partition {p} of {self.topic}: the checkpoint is at offset {start[p]} but the broker "
                           f"ends at {high}; the topic was recreated or its log wiped")
            elif start[p] < low:
                problem = f"partition {p} of {self.topic}: offsets {start[p]}..{low - 1} were deleted before they were read"
            else:
                continue
            if self.fail_on_data_loss:
                raise KafkaSourceError(
                    problem + ". Run 'python clear_outputs.py --yes' to start over, or set "
                    "FAIL_ON_DATA_LOSS=false to continue from the earliest offset still available"
                )
            logger.warning("%s; continuing from offset %d (failOnDataLoss=false)", problem, low)
            adjusted[p] = low
        return adjusted

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        topic_id, partitions = describe_topic(self.bootstrap, self.topic)
        self._seen_topic_id = topic_id
        recreated = self._topic_id(start) not in (None, topic_id)
        begin = {} if recreated else self._unwrap(start)
        marks = watermarks(self.bootstrap, self.topic, partitions)
        begin = self._check_loss(begin, marks, recreated)
        latest = {p: high for p, (_, high) in marks.items()}
        if self.target is not None:
            latest = {p: min(latest[p], self.target.get(p, begin.get(p, 0))) for p in latest}
            latest = {p: max(latest[p], begin.get(p, 0)) for p in latest}
        if isinstance(limit, ReadMaxRows):
            latest = cap_offsets(begin, latest, limit.max_rows)
        return self._wrap(latest, topic_id)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_offsets) if self.max_offsets > 0 else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        _, partitions = describe_topic(self.bootstrap, self.topic)
        self.target = {p: high for p, (_, high) in watermarks(self.bootstrap, self.topic, partitions).items()}
        logger.info("availableNow: reading %s up to %s", self.topic, self.target)

    def reportLatestOffset(self) -> dict | None:
        return None

    def _planned_topic_gone(self, end: dict) -> bool:
        """True when the batch ending at ``end`` was planned against a topic that has since been
        deleted and created again; raises instead when failOnDataLoss is on.

        Spark replays a batch that was planned but not committed when the job stopped. If the
        topic was deleted and created meanwhile, the offsets of that plan name records that are gone,
        while the new topic's records at the same offsets are others: reading them would wait
        until the new topic grows that far, then take the wrong records.
        """
        planned = self._topic_id(end)
        if planned is None or planned == self._seen_topic_id:
            return False  # planned by this reader against the topic it just described: no second lookup
        current, _ = describe_topic(self.bootstrap, self.topic)
        if current == planned:
            return False
        problem = (f"a batch of {self.topic} planned before the job stopped cannot be read: the topic was deleted "
                   "and created again since (its id changed)")
        if self.fail_on_data_loss:
            raise KafkaSourceError(problem + ". Set FAIL_ON_DATA_LOSS=false to skip it and read the new topic "
                                   "from its start, or run 'python clear_outputs.py --yes' to start over")
        logger.warning("%s; skipping that batch (failOnDataLoss=false)", problem)
        return True

    def partitions(self, start: dict, end: dict) -> list[OffsetRange]:
        if self._planned_topic_gone(end):
            return []
        finish = self._unwrap(end)
        if self._topic_id(start) not in (None, self._topic_id(end)):
            begin: dict[int, int] = {}  # a recreated topic is read from its start
        else:
            # An end below its start means the partition was reset after data loss.
            begin = {p: (o if o <= finish.get(p, o) else 0) for p, o in self._unwrap(start).items()}
        return plan_ranges(self.topic, begin, finish)

    def commit(self, end: dict) -> None:
        """Nothing to release: each task opens and closes its own client."""

    # -- data ---------------------------------------------------------------------------------
    def read(self, partition: OffsetRange) -> Iterator:
        yield from read_range(self.bootstrap, partition, self.poll_timeout, self.fail_on_data_loss)


def _to_batch(part: OffsetRange, messages: list):
    """One RecordBatch from error-free messages of ``part``, built column by column.

    Comprehensions over the message list, not a per-message append loop: measured ~1.5x
    faster, and this loop is the Python share of every record's path into Spark.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(messages)
    stamps = pa.array([m.timestamp()[1] for m in messages], pa.int64())
    stamps = pc.if_else(pc.less(stamps, 0), pa.scalar(None, pa.int64()), pc.multiply(stamps, 1000))
    types = pc.subtract(pa.array([m.timestamp()[0] for m in messages], pa.int32()), 1)
    return pa.RecordBatch.from_arrays([
        pa.array([m.key() for m in messages], pa.binary()),
        pa.array([m.value() for m in messages], pa.binary()),
        pa.array([part.topic] * n, pa.string()),
        pa.array([part.partition] * n, pa.int32()),
        pa.array([m.offset() for m in messages], pa.int64()),
        stamps.cast(pa.timestamp("us", tz="UTC")),
        types,
    ], schema=KAFKA_ARROW_SCHEMA)


def read_range(bootstrap: str, part: OffsetRange, poll_timeout: float, fail_on_data_loss: bool = True) -> Iterator:
    """Yield pyarrow RecordBatches holding exactly the records of ``part``, in offset order."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    consumer = _consumer(bootstrap, **{"fetch.max.bytes": 16 * 1024 * 1024,
                                        "max.partition.fetch.bytes": 8 * 1024 * 1024})
    consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    position, idle_since = part.start, time.monotonic()
    try:
        while position < part.end:
            # Asking for no more than is left returns at once at the end of the range instead
            # of waiting out the timeout for records that will not come.
            messages = consumer.consume(max(1, min(20_000, part.end - position)), timeout=0.5)
            if not messages:
                if time.monotonic() - idle_since > poll_timeout:
                    raise KafkaSourceError(
                        f"timed out reading {part.topic}[{part.partition}] at offset {position} "
                        f"(wanted up to {part.end}) after {poll_timeout:.0f} s: is the broker up?"
                    )
                continue
            idle_since = time.monotonic()
            failed = [m for m in messages if m.error() is not None]
            for message in failed:
                code = message.error().code()
                if code == KafkaError._PARTITION_EOF:
                    # The end of the log at or past the range's end: offsets left in the range hold
                    # no record (transaction markers, compaction) and would be waited for forever.
                    if message.offset() >= part.end:
                        position = max(position, part.end)
                    continue
                if code == KafkaError.OFFSET_OUT_OF_RANGE and not fail_on_data_loss:
                    logger.warning("%s[%d] offset %d is gone; continuing from the earliest offset",
                                   part.topic, part.partition, position)
                    consumer.assign([TopicPartition(part.topic, part.partition, OFFSET_BEGINNING)])
                    continue
                raise KafkaSourceError(f"reading {part.topic}[{part.partition}]: {message.error().str()}")
            if failed:
                messages = [m for m in messages if m.error() is None]
            wanted = [m for m in messages if position <= m.offset() < part.end]
            if wanted:
                position = wanted[-1].offset() + 1
                yield _to_batch(part, wanted)
            if messages and messages[-1].offset() >= part.end:
                position = part.end  # a record past the range: nothing else in it will come
    finally:
        consumer.close()
