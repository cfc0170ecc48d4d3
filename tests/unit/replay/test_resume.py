"""Working out what a killed replay already landed, from the newest records of each partition."""

import json
from datetime import date
from decimal import Decimal

from stockpulse.replay.producer import replay
from stockpulse.replay.resume import ResumePoint, key_partition, record_position, resume_point, summarise_tail
from stockpulse.replay.csv_rows import TickRow
from tests.unit.replay.test_producer import FakeProducer, csv_file


def message(index: str, day: str) -> bytes:
    return json.dumps({"index": index, "date": day, "close": "1.0"}).encode()


def row(index: str, day: str) -> TickRow:
    one = Decimal(1)
    return TickRow(date.fromisoformat(day), index, one, one, one, one, one, 1, one)


def point_for(tails: dict[str, list[tuple[str, str]]], partitions: int = 3) -> ResumePoint:
    """A ResumePoint whose partition tails hold the given (index, date) records, by key hashing."""
    records = {p: [] for p in range(partitions)}
    for index, days in tails.items():
        for day in days:
            records[key_partition(index.encode(), partitions)].append((index.encode(), message(index, day)))
    return resume_point(records)


def test_record_position_reads_ticks_and_ignores_anything_else():
    assert record_position(message("HSI", "2020-01-02")) == ("HSI", date(2020, 1, 2))
    for junk in (None, b"", b"not json", b"[1,2]", b'{"index": "HSI"}', b'{"index": "HSI", "date": "soon"}'):
        assert record_position(junk) is None


def test_key_partition_is_stable_and_in_range():
    assert all(0 <= key_partition(k.encode(), 3) < 3 for k in ("HSI", "NYA", "N225", "GDAXI", "IXIC"))
    assert key_partition(b"HSI", 3) == key_partition(b"HSI", 3)
    assert key_partition(b"HSI", 1) == 0


def test_tail_keeps_last_date_per_index_in_offset_order():
    tail = summarise_tail([message("HSI", "2020-01-01"), b"garbage", message("NYA", "2020-01-02"),
                           message("HSI", "2020-01-03")])
    assert tail.last_date == date(2020, 1, 3)
    assert dict(tail.last_by_index) == {"HSI": date(2020, 1, 3), "NYA": date(2020, 1, 2)}


def test_seen_index_resumes_after_its_last_landed_date():
    point = point_for({"HSI": ["2020-01-01", "2020-01-02"]})
    assert point.landed(row("HSI", "2020-01-02"))
    assert not point.landed(row("HSI", "2020-01-03"))


def test_unseen_index_in_a_written_partition_resumes_at_that_partition_last_date():
    # Pick two keys that share a partition so one can be unseen in a partition that has records.
    keys = ["HSI", "NYA", "N225", "GDAXI", "IXIC", "SSMI", "J203", "TWII", "000001", "399001"]
    a, b = next((x, y) for x in keys for y in keys if x != y and key_partition(x.encode(), 3) == key_partition(y.encode(), 3))
    point = point_for({a: ["2020-01-05"]})
    assert point.landed(row(b, "2020-01-04"))       # sent before the partition's newest record
    assert not point.landed(row(b, "2020-01-05"))   # same tick, but not in the tail: not landed
    assert not point.landed(row(b, "2020-01-06"))


def test_empty_partition_means_nothing_of_it_landed():
    point = point_for({})
    assert point.empty and "holds no ticks yet" in point.describe()
    assert not point.landed(row("HSI", "1990-01-01"))


def test_replay_with_resume_skips_landed_rows_only_on_the_first_loop_pass(tmp_path):
    path = csv_file(tmp_path)  # 2020-01-01 HSI NYA, 2020-01-02 HSI, 2020-01-03 HSI NYA N225
    point = point_for({"HSI": ["2020-01-01", "2020-01-02"], "NYA": ["2020-01-01"]})
    producer = FakeProducer()
    stats = replay(path, "t", producer, tick_interval=0, resume=point)
    sent = [(m["index"], m["date"]) for _, _, m in producer.sent]
    assert ("HSI", "2020-01-03") in sent and ("NYA", "2020-01-03") in sent and ("N225", "2020-01-03") in sent
    assert not any(d in ("2020-01-01", "2020-01-02") for _, d in sent)
    assert stats.already_sent == 3 and "3 rows skipped as already landed" in stats.summary()

    looped = FakeProducer()
    replay(path, "t", looped, tick_interval=0, resume=point, loop=True, limit=3)
    assert [m["date"] for _, _, m in looped.sent] == ["2020-01-03"] * 3 + ["2020-01-01"] * 2 + ["2020-01-02"]


def test_resume_with_everything_landed_sends_nothing(tmp_path):
    point = point_for({"HSI": ["2020-01-03"], "NYA": ["2020-01-03"], "N225": ["2020-01-03"]})
    producer = FakeProducer()
    stats = replay(csv_file(tmp_path), "t", producer, tick_interval=0, resume=point)
    assert producer.sent == [] and stats.already_sent == 6
