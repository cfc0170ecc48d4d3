"""The confluent-kafka adapter with librdkafka's Producer faked: callbacks, polling, a full queue."""

import pytest

from stockpulse.replay import confluent_client
from stockpulse.replay.confluent_client import ConfluentProducer, DeliveryFailed, settings
from stockpulse.errors import ServiceError


class FakeError:
    def name(self):
        return "_MSG_TIMED_OUT"

    def str(self):
        return "Local: Message timed out"


class FakeLibrdkafka:
    """Queues ``queue_limit`` records, reports them on ``poll``/``flush`` (failing the keys in
    ``failing``), and counts the calls."""

    def __init__(self, config, queue_limit=10**9, failing=(), reachable=True):
        self.config, self.queue_limit, self.failing, self.reachable = config, queue_limit, failing, reachable
        self.queued, self.polls, self.purged, self.closed = [], 0, False, False

    def list_topics(self, timeout):
        if not self.reachable:
            from confluent_kafka import KafkaException

            raise KafkaException("no brokers")

    def produce(self, topic, value, key, on_delivery):
        if len(self.queued) >= self.queue_limit:
            raise BufferError("queue full")
        self.queued.append((key, on_delivery))

    def poll(self, timeout):
        self.polls += 1
        queued, self.queued = self.queued, []
        for key, report in queued:
            report(FakeError() if key in self.failing else None, key)
        return len(queued)

    def flush(self, timeout):
        self.poll(timeout)
        return 0

    def purge(self, in_queue=True, in_flight=True):
        self.purged = in_queue and in_flight

    def close(self):
        self.closed = True


def client(monkeypatch, block_timeout=60, **fake):
    made = {}

    def producer(config):
        made["fake"] = FakeLibrdkafka(config, **fake)
        return made["fake"]

    monkeypatch.setattr("confluent_kafka.Producer", producer)
    return ConfluentProducer(settings("127.0.0.1:9092", 120_000, 20), block_timeout=block_timeout), made


def test_each_record_reports_to_the_callbacks_attached_after_the_send(monkeypatch):
    producer, made = client(monkeypatch, failing={b"bad"})
    acked, failed = [], []
    for key in (b"a", b"bad", b"b"):
        producer.send("t", key=key, value=b"{}").add_callback(acked.append).add_errback(failed.append)
    assert acked == failed == []  # nothing is reported until librdkafka is polled
    producer.flush(1)
    assert acked == [b"a", b"b"]
    assert len(failed) == 1 and isinstance(failed[0], DeliveryFailed)
    assert str(failed[0]) == "_MSG_TIMED_OUT: Local: Message timed out"


def test_a_full_queue_is_polled_until_the_record_fits(monkeypatch):
    producer, made = client(monkeypatch, queue_limit=2)
    acked = []
    for key in (b"a", b"b", b"c"):
        producer.send("t", key=key, value=b"{}").add_callback(acked.append)
    assert made["fake"].polls == 1 and acked == [b"a", b"b"]
    producer.flush(1)
    assert acked == [b"a", b"b", b"c"]


def test_deliveries_are_served_every_few_hundred_sends_and_always_reach_their_callbacks(monkeypatch):
    producer, made = client(monkeypatch)
    acked = []
    sends = confluent_client.POLL_EVERY * 3 + 7
    for n in range(sends):  # the loop attaches callbacks after send returns, as replay() does
        producer.send("t", key=str(n).encode(), value=b"{}").add_callback(acked.append)
    assert made["fake"].polls == 3
    producer.flush(1)
    assert len(acked) == sends  # no report was served before its callbacks were attached


def test_a_slow_replay_still_hears_of_its_deliveries_each_second(monkeypatch):
    producer, made = client(monkeypatch)
    acked = []
    producer.send("t", key=b"a", value=b"{}").add_callback(acked.append)
    monkeypatch.setattr(confluent_client.time, "monotonic", lambda: 10**9)  # a second and more later
    producer.send("t", key=b"b", value=b"{}").add_callback(acked.append)
    assert acked == [b"a"]


def test_a_queue_full_for_too_long_or_a_refused_record_is_one_error(monkeypatch):
    from confluent_kafka import KafkaError, KafkaException

    producer, made = client(monkeypatch, block_timeout=0.2, queue_limit=0)
    made["fake"].poll = lambda timeout: 0  # the broker takes nothing: the queue never drains
    with pytest.raises(ServiceError, match="queue stayed full for 0 s"):
        producer.send("t", key=b"a", value=b"{}")

    producer, made = client(monkeypatch)

    def refuse(*args, **kwargs):
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    made["fake"].produce = refuse
    with pytest.raises(ServiceError, match="refused a record for t: "):
        producer.send("t", key=b"a", value=b"{}")


def test_a_fatal_client_error_stops_the_next_send(monkeypatch):
    from confluent_kafka import KafkaError

    producer, made = client(monkeypatch)
    producer._client_error(KafkaError(KafkaError._FATAL, "idempotence lost", fatal=True))
    with pytest.raises(ServiceError, match="the Kafka client stopped"):
        producer.send("t", key=b"a", value=b"{}")


def test_the_same_guarantees_as_the_default_client():
    config = settings("b:9092", 120_000, 20)
    assert config["acks"] == "all" and config["enable.idempotence"] is True
    assert config["partitioner"] == "murmur2_random"  # the Java client's key rule, which --resume relies on
    assert config["request.timeout.ms"] < config["delivery.timeout.ms"]


def test_an_unreachable_broker_is_one_error_at_start(monkeypatch):
    from stockpulse.replay.producer import make_producer

    monkeypatch.setattr("confluent_kafka.Producer", lambda config: FakeLibrdkafka(config, reachable=False))
    with pytest.raises(ServiceError, match="cannot reach Kafka at 127.0.0.1:9092: start it with 'make services'"):
        make_producer("127.0.0.1:9092", client="confluent")


def test_close_gives_up_on_what_is_still_queued(monkeypatch):
    producer, made = client(monkeypatch)
    made["fake"].flush = lambda timeout: 3  # three records never reported
    polls = made["fake"].polls
    producer.close(0.1)
    assert made["fake"].purged and made["fake"].closed
    assert made["fake"].polls == polls + 1  # the purged records' reports served before closing
