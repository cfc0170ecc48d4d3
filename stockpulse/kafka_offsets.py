"""Where a Kafka topic stands: its id, partitions and real high watermarks, and its newest records.

Shared by the Spark reader (:mod:`stockpulse.stream.kafka_source`), the producer's ``--resume`` and
Airflow's health check. Client: confluent-kafka (librdkafka), which answers all three without
joining a consumer group, so nothing here ever moves a group's committed offsets.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class KafkaOffsetsError(RuntimeError):
    """The broker or topic could not be read; the message says what to check."""


def make_consumer(bootstrap: str, **extra):
    """A group-less reader: positions come from its callers (assign), never from commits."""
    from confluent_kafka import Consumer

    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "stockpulse-spark-reader",  # required by librdkafka; never joined or committed
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "socket.timeout.ms": 10_000,
        "log_level": 3,
    }
    config.update(extra)
    return Consumer(config)


def describe_topic(bootstrap: str, topic: str, timeout: float = 15.0) -> tuple[str, list[int]]:
    """(topic id, partition ids). The id changes when a topic is deleted and created again."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000, "log_level": 3})
    try:
        description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic].result(timeout)
    except KafkaException as exc:
        raise KafkaOffsetsError(
            f"cannot describe topic {topic!r} on {bootstrap}: {exc.args[0].str() if exc.args else exc} "
            "(is the broker up, and does the topic exist? 'make services' creates it)"
        ) from None
    return str(description.topic_id), sorted(p.id for p in description.partitions)


def topic_partitions(bootstrap: str, topic: str, timeout: float = 15.0) -> list[int]:
    """Partition ids of ``topic``; empty when it does not exist. Never creates the topic."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000, "log_level": 0,
                         "allow.auto.create.topics": False})
    try:
        metadata = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise KafkaOffsetsError(f"Kafka at {bootstrap} does not answer: "
                                f"{exc.args[0].str() if exc.args else exc}") from None
    if metadata is None or (metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return []
    if metadata.error is not None:
        raise KafkaOffsetsError(f"cannot read topic {topic!r} on {bootstrap}: {metadata.error.str()}")
    return sorted(metadata.partitions)


def watermarks(bootstrap: str, topic: str, partitions: list[int], timeout: float = 15.0) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} for ``partitions`` of ``topic``, asked of the partition leaders."""
    from confluent_kafka import KafkaException, TopicPartition

    consumer = make_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                for p in partitions}
    except KafkaException as exc:
        raise KafkaOffsetsError(f"no offsets from {bootstrap} for {topic}: "
                                f"{exc.args[0].str() if exc.args else exc}") from None
    finally:
        consumer.close()


def newest_records(bootstrap: str, topic: str, window: int, timeout: float = 30.0) -> dict[int, list[tuple]]:
    """{partition: [(key, value), ...]}: the last ``window`` records of each partition, oldest first.

    Empty partitions map to an empty list. The range read is sized from the high watermarks, then
    confirmed by reaching either its last offset or the partition's end.
    """
    from confluent_kafka import KafkaError, TopicPartition

    _, partitions = describe_topic(bootstrap, topic)
    marks = watermarks(bootstrap, topic, partitions)
    ranges = {p: (max(low, high - window), high) for p, (low, high) in marks.items()}
    records: dict[int, list[tuple]] = {p: [] for p in partitions}
    pending = {p for p, (lo, hi) in ranges.items() if lo < hi}
    if not pending:
        return records
    reader = make_consumer(bootstrap)
    try:
        reader.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        while pending:
            for message in reader.consume(1000, timeout=0.2):
                p = message.partition()
                err = message.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                        continue
                    raise KafkaOffsetsError(f"reading the newest records of {topic}[{p}]: {err.str()}")
                if message.offset() < ranges[p][1]:
                    records[p].append((message.key(), message.value()))
                if message.offset() >= ranges[p][1] - 1:
                    pending.discard(p)
            if pending and time.monotonic() > deadline:
                raise KafkaOffsetsError(
                    f"no answer from {bootstrap} for the newest records of {topic} partitions {sorted(pending)} "
                    f"within {timeout:.0f} s"
                )
        return records
    finally:
        reader.close()
