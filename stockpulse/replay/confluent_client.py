"""confluent-kafka (librdkafka) as the producer's client: the faster one, chosen explicitly.

kafka-python stays the default, the client most users of this stack know. But its ``send`` is
half of the sending thread's time and its I/O thread takes the GIL for the rest
(``docs/performance.md``), so it cannot replay faster than ~17,000 messages/s on two cores.
librdkafka batches, checksums and talks to the broker on its own C threads; Python only hands
it each record.

:class:`ConfluentProducer` offers :func:`~stockpulse.replay.producer.replay` the calls it makes
of kafka-python's client (``send`` with callbacks, ``flush``, ``close``), with the same
guarantees: ``acks=all`` and idempotence, and the Java client's murmur2 partitioning of keys
(librdkafka's ``murmur2_random``), which ``--resume`` and per-index order rely on.
"""

from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger(__name__)

POLL_EVERY = 500
"""Sends between two calls that let librdkafka report deliveries: a report costs nothing until
polled, and polling on every send is a tenth of a send's cost."""


class DeliveryFailed(Exception):
    """A record librdkafka gave up on (its error says why)."""


class _Delivery:
    """What ``send`` returns: takes the callbacks the replay loop attaches, as kafka-python's
    future does. Reports arrive only from :meth:`ConfluentProducer.poll`-ing calls, never while
    the loop is still attaching them."""

    __slots__ = ("on_ok", "on_error")

    def __init__(self) -> None:
        self.on_ok: Callable | None = None
        self.on_error: Callable | None = None

    def add_callback(self, function: Callable) -> "_Delivery":
        self.on_ok = function
        return self

    def add_errback(self, function: Callable) -> "_Delivery":
        self.on_error = function
        return self

    def report(self, error, message) -> None:
        if error is None:
            if self.on_ok is not None:
                self.on_ok(message)
        elif self.on_error is not None:
            self.on_error(DeliveryFailed(f"{error.name()}: {error.str()}"))


def settings(bootstrap_servers: str, delivery_ms: int, linger_ms: int) -> dict:
    """librdkafka's configuration, the same choices as the kafka-python client's."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": "stockpulse-producer",
        "logger": logger,  # librdkafka's own log lines through logging, not printed to stderr
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",  # the Java client's rule for keyed records
        "linger.ms": linger_ms,
        "batch.size": 256 * 1024,
        "delivery.timeout.ms": delivery_ms,
        "request.timeout.ms": min(30_000, delivery_ms - linger_ms - 1),
    }


class ConfluentProducer:
    """The subset of kafka-python's ``KafkaProducer`` the replay uses, on librdkafka."""

    def __init__(self, config: dict, connect_timeout: float = 10) -> None:
        """Raises ``confluent_kafka.KafkaException`` when no broker answers within ``connect_timeout``."""
        from confluent_kafka import Producer

        self._producer = Producer({**config, "error_cb": self._client_error})
        self._unsent_polls = 0
        # librdkafka connects lazily: metadata asked for now makes an absent broker fail at
        # start, as kafka-python's does
        self._producer.list_topics(timeout=connect_timeout)

    @staticmethod
    def _client_error(error) -> None:
        """librdkafka's own errors (a broker down, retried by itself): logged, not raised."""
        logger.warning("Kafka client: %s", error.str())

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> _Delivery:
        delivery = _Delivery()
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivery.report)
                break
            except BufferError:  # librdkafka's queue is full: let it send and report, then retry
                self._producer.poll(0.05)
        self._unsent_polls += 1
        if self._unsent_polls >= POLL_EVERY:
            self._unsent_polls = 0
            self._producer.poll(0)
        return delivery

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for every record's report; the caller counts what is left."""
        self._producer.flush(-1 if timeout is None else timeout)

    def close(self, timeout: float = 10) -> None:
        """Flush, then give up on what is still queued (its callbacks report the failure)."""
        if self._producer.flush(timeout):
            self._producer.purge()
            self._producer.poll(0)
        self._producer.close()
