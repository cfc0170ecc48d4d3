"""The replay loop with a fake producer: what is sent, limits, summaries, exit codes."""

import json
import random
import threading
import time
from datetime import datetime, timezone

import pytest

from stockpulse.replay.producer import main, replay
from stockpulse.replay.csv_rows import PROCESSED_COLUMNS


class FakeFuture:
    """The broker acknowledges every record at once."""

    def add_callback(self, fn):
        fn(None)
        return self

    def add_errback(self, fn):
        return self


class FakeProducer:
    def __init__(self):
        self.sent = []
        self.flushed = 0

    def send(self, topic, key, value):
        self.sent.append((topic, key, json.loads(value)))
        return FakeFuture()

    def flush(self, timeout=None):
        self.flushed += 1


def csv_file(tmp_path):
    rows = [",".join(PROCESSED_COLUMNS)]
    for day, indices in (("2020-01-01", "HSI NYA"), ("2020-01-02", "HSI"), ("2020-01-03", "HSI NYA N225")):
        for index in indices.split():
            rows.append(f"{index},{day},1,2,0.5,1.5,1.5,100.0,1.5")
    rows.insert(3, "HSI,2020-01-01,oops")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_one_stream_ts_per_tick_keyed_by_index(tmp_path):
    producer = FakeProducer()
    clock = iter(datetime(2026, 1, 1, 0, 0, s, tzinfo=timezone.utc) for s in range(10))
    stats = replay(csv_file(tmp_path), "topic", producer, tick_interval=0, clock=lambda: next(clock))
    assert (stats.ticks, stats.rows, stats.bad_rows) == (3, 6, 1)
    stamps = [m["stream_ts"] for _, _, m in producer.sent]
    assert stamps == ["2026-01-01T00:00:00.000000Z"] * 2 + ["2026-01-01T00:00:01.000000Z"] + ["2026-01-01T00:00:02.000000Z"] * 3
    assert [k for _, k, _ in producer.sent][:2] == [b"HSI", b"NYA"]
    assert producer.flushed == 1
    assert "sent 3 ticks (6 rows)" in stats.summary() and "1 bad rows" in stats.summary()


def test_limit_and_loop(tmp_path):
    producer = FakeProducer()
    stats = replay(csv_file(tmp_path), "topic", producer, tick_interval=0, limit=5, loop=True)
    assert stats.ticks == 5
    assert [m["date"] for _, _, m in producer.sent][-1] == "2020-01-02"


def test_cli_missing_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["--csv", str(tmp_path / "nope.csv"), "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_start_date_skips_earlier_ticks(tmp_path):
    from datetime import date

    producer = FakeProducer()
    stats = replay(csv_file(tmp_path), "topic", producer, tick_interval=0, start_date=date(2020, 1, 2))
    assert stats.ticks == 2 and {m["date"] for _, _, m in producer.sent} == {"2020-01-02", "2020-01-03"}


def test_stop_event_ends_after_the_current_tick_never_inside_it(tmp_path):
    stop = threading.Event()

    class StoppingProducer(FakeProducer):
        def send(self, topic, key, value):
            if len(self.sent) == 3:  # first row of the third tick (2020-01-03, three indices)
                stop.set()
            return super().send(topic, key, value)

    producer = StoppingProducer()
    stats = replay(csv_file(tmp_path), "topic", producer, tick_interval=0, stop=stop, loop=True)
    assert stats.interrupted and stats.ticks == 3 and stats.rows == 6 == len(producer.sent)
    assert [m["index"] for _, _, m in producer.sent][-3:] == ["HSI", "NYA", "N225"]
    assert producer.flushed == 1
    assert stats.summary().startswith("interrupted after 3 ticks (6 rows)")


def test_stop_event_cuts_the_wait_for_the_next_tick(tmp_path):
    stop = threading.Event()
    producer = FakeProducer()
    result = {}
    worker = threading.Thread(target=lambda: result.update(stats=replay(
        csv_file(tmp_path), "topic", producer, tick_interval=3600, stop=stop)))
    worker.start()
    while not producer.sent:
        threading.Event().wait(0.01)
    stop.set()
    worker.join(timeout=60)
    assert not worker.is_alive(), "replay kept waiting out the hour-long tick interval"
    assert result["stats"].interrupted and result["stats"].ticks == 1


class FakeClient(FakeProducer):
    """What ``make_producer`` returns, for the CLI: acknowledges everything."""

    def close(self, timeout=None):
        pass


def all_bad_file(tmp_path, rows=40):
    lines = [",".join(PROCESSED_COLUMNS)] + [f"HSI,{day:02d}/07/1997,1,2,0.5,1.5,1.5,100,1.5" for day in range(1, rows + 1)]
    path = tmp_path / "dmy.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_with_no_valid_row_exits_2_with_rejections_counted_by_reason(tmp_path, capsys, monkeypatch, caplog):
    """A real file whose dates are dd/mm/yyyy: one summary line per reason, not one line per row."""
    monkeypatch.setattr("stockpulse.replay.producer.make_producer", lambda _servers, _timeout=120, _client="kafka-python": FakeClient())
    path = all_bad_file(tmp_path)
    assert main(["--csv", str(path), "--tick-interval", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 40 rows rejected: field 'Date' is not a YYYY-MM-DD date (lines 2, 3, 4, 5, 6, ...)" in err
    assert "holds no valid row" in err and "Traceback" not in err
    assert sum("skipped bad row" in r.getMessage() for r in caplog.records) == 5


def test_the_summary_counts_acknowledged_rows_and_names_failed_sends(tmp_path, caplog):
    class Refused(FakeFuture):
        def add_callback(self, fn):
            return self

        def add_errback(self, fn):
            fn(RuntimeError("UnknownProducerIdException"))
            return self

    class RefusingProducer(FakeProducer):
        def send(self, topic, key, value):
            super().send(topic, key, value)
            return Refused()

    stats = replay(csv_file(tmp_path), "t", RefusingProducer(), tick_interval=0)
    assert stats.rows == 0 and stats.failed_sends == 6 and stats.valid_rows == 6
    assert "sent 3 ticks (0 rows)" in stats.summary()
    assert any("UnknownProducerIdException" in r.getMessage() for r in caplog.records)


class SilentFuture(FakeFuture):
    """A record the client never reports on; its callbacks are kept to be fired late."""

    def __init__(self, late: list):
        self.late = late

    def add_callback(self, fn):
        self.late.append(fn)
        return self


class HangingProducer(FakeProducer):
    """kafka-python 3.0 after its broker died mid-request: records stay pending, flush() times out."""

    def __init__(self):
        super().__init__()
        self.late = []

    def send(self, topic, key, value):
        super().send(topic, key, value)
        return SilentFuture(self.late)

    def flush(self, timeout=None):
        from kafka.errors import KafkaTimeoutError

        super().flush(timeout)
        time.sleep(0.02)
        raise KafkaTimeoutError("Timeout waiting for future")


def test_sends_never_answered_are_failed_after_the_drain_timeout_not_waited_on_forever(tmp_path, caplog):
    """kafka-python 3.0 can leave records of an idempotent producer incomplete for good when its
    broker dies mid-request; its flush() then never returned and the producer hung, deaf to signals."""
    producer = HangingProducer()
    stats = replay(csv_file(tmp_path), "t", producer, tick_interval=0, drain_timeout=0.3)
    assert stats.rows == 0 and stats.failed_sends == 6
    assert any("6 sends were not acknowledged within 0 s" in r.getMessage() for r in caplog.records)
    for fn in producer.late:  # the client reports them after all
        fn(None)
    assert stats.rows == 0 and stats.failed_sends == 6, "a callback after giving up changed the counts"


def test_a_signal_cuts_the_wait_for_a_dead_broker_short(tmp_path, monkeypatch):
    from stockpulse.replay import producer as producer_module

    monkeypatch.setattr(producer_module, "STOPPED_DRAIN_SECONDS", 0.2)
    stop = threading.Event()

    class StoppedWhileDraining(HangingProducer):
        def flush(self, timeout=None):
            threading.Timer(0.3, stop.set).start()  # the signal comes while the final flush waits
            super().flush(timeout)

    started = time.monotonic()
    stats = replay(csv_file(tmp_path), "t", StoppedWhileDraining(), tick_interval=0, drain_timeout=60, stop=stop)
    assert time.monotonic() - started < 5 and stats.failed_sends == 6


def test_gzip_only_while_the_clients_checksum_is_pure_python():
    from stockpulse.replay.producer import compression_for

    assert compression_for(native_crc32c=False) == "gzip"
    assert compression_for(native_crc32c=True) is None


class Cluster:
    """What a partitioner sees of kafka-python's ClusterMetadata."""

    def __init__(self, partitions):
        self.partitions = partitions

    def topics(self):
        return {"t"} if self.partitions is not None else set()

    def partitions_for_topic(self, topic):
        return set(self.partitions) if topic == "t" and self.partitions is not None else None

    def available_partitions_for_topic(self, topic):
        return self.partitions_for_topic(topic) or set()


def test_the_partitioner_picks_what_kafka_pythons_default_picks():
    """Per-index order and --resume rely on the Java client's murmur2 rule: hashing each key once
    must not move any key."""
    from kafka.partitioner import DefaultPartitioner

    from stockpulse.replay.producer import key_hash_partitioner

    ours, default = key_hash_partitioner(), DefaultPartitioner()
    rng = random.Random(7)
    keys = [b"NYA", b"HSI", b"000001.SS", b"N225", "\U0001F642".encode()] + [rng.randbytes(rng.randint(0, 40)) for _ in range(300)]
    for partitions in ([0], [0, 1, 2], [2, 0, 1], list(range(7)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]):
        cluster = Cluster(partitions)
        for _ in range(2):  # the second round is answered from memory
            assert [ours.partition("t", k, k, b"v", b"v", cluster) for k in keys] == \
                   [default.partition("t", k, k, b"v", b"v", cluster) for k in keys]
    assert ours.partition("t", None, None, b"v", b"v", Cluster([0, 1, 2])) in {0, 1, 2}
    with pytest.raises(ValueError):
        ours.partition("unknown", b"k", b"k", b"v", b"v", Cluster(None))


def test_the_client_stays_acks_all_and_idempotent(monkeypatch):
    import kafka
    from kafka.partitioner import DefaultPartitioner

    from stockpulse.replay import producer as producer_module

    made = {}
    monkeypatch.setattr(kafka, "KafkaProducer", lambda **config: made.update(config) or FakeClient())
    monkeypatch.setattr(producer_module, "has_native_crc32c", lambda: False)
    producer_module.make_producer("127.0.0.1:1,127.0.0.1:2", delivery_timeout=30)
    assert made["acks"] == "all" and made["enable_idempotence"] is True
    assert made.get("max_in_flight_requests_per_connection", 5) <= 5  # what idempotence allows
    assert made["compression_type"] == "gzip" and isinstance(made["partitioner"], DefaultPartitioner)
    assert made["request_timeout_ms"] < made["delivery_timeout_ms"] == 30_000
    monkeypatch.setattr(producer_module, "has_native_crc32c", lambda: True)
    producer_module.make_producer("127.0.0.1:1", delivery_timeout=30)
    assert made["compression_type"] is None
