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

    def purge(self):
        self.purged = True

    def close(self):
        self.closed = True


def client(monkeypatch, **fake):
    made = {}

    def producer(config):
        made["fake"] = FakeLibrdkafka(config, **fake)
        return made["fake"]

    monkeypatch.setattr("confluent_kafka.Producer", producer)
    return ConfluentProducer(settings("127.0.0.1:9092", 120_000, 20)), made


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


def test_deliveries_are_served_every_few_hundred_sends(monkeypatch):
    producer, made = client(monkeypatch)
    for _ in range(confluent_client.POLL_EVERY * 3):
        producer.send("t", key=b"k", value=b"{}")
    assert made["fake"].polls == 3


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
    producer.close(0.1)
    assert made["fake"].purged and made["fake"].closed
