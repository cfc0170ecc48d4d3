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
import time
from typing import Callable

from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)

POLL_EVERY = 500
"""Sends between two calls that let librdkafka report deliveries (and at least one a second): a
report costs nothing until polled, and polling on every send is a tenth of a send's cost."""
BLOCK_SECONDS = 60
"""How long a send waits for room in librdkafka's full queue before it is an error."""


class BrokerUnreachable(Exception):
    """No broker answered the client's first request."""


class DeliveryFailed(Exception):
    """A record librdkafka gave up on (its error says why)."""


class _Delivery:
    """What ``send`` returns: takes the callbacks the replay loop attaches, as kafka-python's
    future does. Reports arrive only while :class:`ConfluentProducer` polls, which it never does
    between queueing a record and returning it to the loop."""

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

    def __init__(self, config: dict, connect_timeout: float = 10, block_timeout: float = BLOCK_SECONDS) -> None:
        """Raises :class:`BrokerUnreachable` when no broker answers within ``connect_timeout``."""
        from confluent_kafka import KafkaException, Producer

        self._fatal: str | None = None
        self._block_timeout = block_timeout
        self._producer = Producer({**config, "error_cb": self._client_error})
        self._sends_since_poll, self._polled_at = 0, time.monotonic()
        try:  # librdkafka connects lazily: asking for metadata now fails an absent broker at start, as kafka-python does
            self._producer.list_topics(timeout=connect_timeout)
        except KafkaException as exc:
            raise BrokerUnreachable(str(exc)) from None

    def _client_error(self, error) -> None:
        """librdkafka's own errors: a broker down is retried by the client itself and only logged;
        a fatal one (the idempotent producer's state lost) stops the next send."""
        if error.fatal():
            self._fatal = error.str()
        logger.warning("Kafka client: %s", error.str())

    def _serve(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)
        self._sends_since_poll, self._polled_at = 0, time.monotonic()

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> _Delivery:
        """Queue one record. Reports of earlier records are served first, every few hundred sends
        or once a second, and never between this record's queueing and the caller attaching its
        callbacks. A queue full for ``block_timeout`` seconds (the broker gone) is an error, as
        kafka-python's ``max_block_ms`` makes it."""
        from confluent_kafka import KafkaException

        if self._sends_since_poll >= POLL_EVERY or time.monotonic() - self._polled_at >= 1:
            self._serve()
        if self._fatal:
            raise ServiceError(f"the Kafka client stopped: {self._fatal}")
        delivery = _Delivery()
        deadline = time.monotonic() + self._block_timeout
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivery.report)
                break
            except BufferError:  # librdkafka's queue is full: let it send and report, then retry
                if time.monotonic() >= deadline:
                    raise ServiceError(f"the Kafka client's queue stayed full for {self._block_timeout:.0f} s: "
                                       "the broker takes nothing") from None
                self._serve(0.05)
            except KafkaException as exc:  # a record or topic the client refuses (too large, unknown topic)
                raise ServiceError(f"the Kafka client refused a record for {topic}: {exc.args[0].str()}") from None
        self._sends_since_poll += 1
        return delivery

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for every record's report; the caller counts what is left."""
        self._producer.flush(-1 if timeout is None else timeout)

    def close(self, timeout: float = 10) -> None:
        """Flush, then give up on what is still queued or in flight (its callbacks report the
        failure), so that closing, which waits for every record, returns at once."""
        if self._producer.flush(timeout):
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)
        self._producer.close()
