"""Offset planning of the Python Kafka source: ranges, read limits, starting offsets."""

import pytest

from stockpulse.stream.kafka_source import (
    KafkaSourceError, KafkaStreamReader, OffsetRange, cap_offsets, parse_starting_offsets, plan_ranges,
)


def test_plan_ranges_splits_large_backlogs_and_skips_empty():
    ranges = plan_ranges("t", {0: 0, 1: 5, 2: 7}, {0: 120, 1: 5, 2: 9}, split=50)
    assert ranges == [OffsetRange("t", 0, 0, 50), OffsetRange("t", 0, 50, 100), OffsetRange("t", 0, 100, 120),
                      OffsetRange("t", 2, 7, 9)]


def test_new_partition_starts_at_zero():
    assert plan_ranges("t", {0: 3}, {0: 3, 1: 2}) == [OffsetRange("t", 1, 0, 2)]


def test_cap_offsets_respects_limit_and_starves_nobody():
    capped = cap_offsets({0: 0, 1: 0, 2: 0}, {0: 900, 1: 90, 2: 10}, 100)
    assert sum(capped.values()) <= 100 + 3
    assert all(capped[p] > 0 for p in capped)
    assert cap_offsets({0: 0}, {0: 5}, 100) == {0: 5}


def test_starting_offsets_forms():
    assert parse_starting_offsets("earliest", "t") == "earliest"
    assert parse_starting_offsets("LATEST", "t") == "latest"
    assert parse_starting_offsets('{"t": {"0": 5, "1": -2}}', "t") == {0: 5, 1: -2}
    with pytest.raises(KafkaSourceError, match="startingOffsets"):
        parse_starting_offsets('{"other": {"0": 1}}', "t")


class Options(dict):
    """Stands in for Spark's case-insensitive options object."""


def reader(**extra):
    return KafkaStreamReader(Options({"kafka.bootstrap.servers": "b:1", "subscribe": "t", **extra}))


def test_partitions_after_topic_recreated_read_new_topic_from_start(monkeypatch):
    # The broker still holds the topic the batch was planned against.
    monkeypatch.setattr("stockpulse.stream.kafka_source.describe_topic", lambda bootstrap, topic: ("new", [0, 1]))
    start = {"t": {"0": 500, "1": 400}, "topicIds": {"t": "old"}}
    end = {"t": {"0": 20, "1": 30}, "topicIds": {"t": "new"}}
    assert reader().partitions(start, end) == [OffsetRange("t", 0, 0, 20), OffsetRange("t", 1, 0, 30)]


def test_data_loss_fails_by_default_with_advice():
    with pytest.raises(KafkaSourceError, match="FAIL_ON_DATA_LOSS=false"):
        reader()._check_loss({0: 500}, {0: (0, 20)}, recreated=False)
    assert reader(failOnDataLoss="false")._check_loss({0: 500}, {0: (0, 20)}, recreated=False) == {0: 0}
    with pytest.raises(KafkaSourceError, match="created again"):
        reader()._check_loss({0: 5}, {0: (0, 20)}, recreated=True)


class _Message:
    def __init__(self, offset, eof=False):
        self._offset, self._eof = offset, eof

    def offset(self):
        return self._offset

    def error(self):
        if not self._eof:
            return None
        from confluent_kafka import KafkaError

        return KafkaError(KafkaError._PARTITION_EOF)

    def key(self):
        return b"HSI"

    def value(self):
        return b"{}"

    def timestamp(self):
        return (1, 1_700_000_000_000)


class _FakeConsumer:
    """Hands out prepared polls, then nothing (a read that waits for more would time out)."""

    def __init__(self, polls):
        self.polls = list(polls)

    def assign(self, _partitions):
        pass

    def consume(self, _n, timeout):
        return self.polls.pop(0) if self.polls else []

    def close(self):
        pass


@pytest.mark.parametrize("polls", [
    [[_Message(0), _Message(1)], [_Message(3, eof=True)]],   # the range ends in offsets with no record
    [[_Message(0), _Message(1)], [_Message(4)]],            # a record past the range's end arrives
], ids=["eof", "record-past-end"])
def test_a_range_with_offsets_that_hold_no_record_still_ends(monkeypatch, polls):
    import stockpulse.stream.kafka_source as source

    monkeypatch.setattr(source, "_consumer", lambda *_a, **_k: _FakeConsumer(polls))
    batches = list(source.read_range("b:9092", OffsetRange("t", 0, 0, 3), poll_timeout=1.0))
    assert [o for b in batches for o in b.column("offset").to_pylist()] == [0, 1]


def test_a_batch_planned_against_a_lost_topic_is_refused_or_skipped(monkeypatch):
    monkeypatch.setattr("stockpulse.stream.kafka_source.describe_topic", lambda bootstrap, topic: ("after-restart", [0]))
    start = {"t": {"0": 100}, "topicIds": {"t": "before"}}
    end = {"t": {"0": 150}, "topicIds": {"t": "before"}}
    with pytest.raises(KafkaSourceError, match="created again"):
        reader().partitions(start, end)
    assert reader(failOnDataLoss="false").partitions(start, end) == []


def test_a_batch_this_reader_just_planned_needs_no_second_topic_lookup(monkeypatch):
    calls = []
    monkeypatch.setattr("stockpulse.stream.kafka_source.describe_topic", lambda b, t: calls.append(t) or ("id", [0]))
    monkeypatch.setattr("stockpulse.stream.kafka_source.watermarks", lambda b, t, parts: {0: (0, 50)})
    r = reader()
    end = r.latestOffset({"t": {"0": 10}, "topicIds": {"t": "id"}}, None)
    assert r.partitions({"t": {"0": 10}, "topicIds": {"t": "id"}}, end) == [OffsetRange("t", 0, 10, 50)]
    assert len(calls) == 1
