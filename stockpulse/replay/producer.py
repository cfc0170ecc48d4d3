"""Replay the processed CSV into Kafka, one tick per trading date.

The CLI lives in ``producer/producer.py``; this module holds the loop so tests can drive it.
Client: kafka-python, the library most users of this stack already know; confluent-kafka
(librdkafka) when asked for (``--client confluent``, :mod:`stockpulse.replay.confluent_client`),
the faster one. Each message is keyed by index (so one index's ticks stay ordered within a
partition) and sent with ``acks=all``. The CSV is read, checked and encoded in a child process
(:mod:`stockpulse.replay.tick_feed`), so this one only sends.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from stockpulse.config import PROJECT_ROOT, KafkaSettings, ProducerSettings, env_int
from stockpulse.errors import ServiceError, StockPulseError
from stockpulse.replay.resume import ResumePoint, key_partition
from stockpulse.replay.csv_rows import BadRow, check_header, format_stream_ts, message_head
from stockpulse.replay.tick_feed import Chunk, Tick, TickFeed

logger = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    """What a run did; printed as the one-line summary and returned to tests and the benchmark."""

    ticks: int = 0
    rows: int = 0  # acknowledged by the broker (counted by the send callbacks)
    valid_rows: int = 0  # rows of the file that passed validation, sent or not
    bad_rows: int = 0
    failed_sends: int = 0
    already_sent: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    bad: list[str] = field(default_factory=list)
    rejected: dict[str, list[int]] = field(default_factory=dict)  # reason -> [count, first lines...]

    def reject(self, row: BadRow) -> None:
        self.bad_rows += 1
        if len(self.bad) < 100:
            self.bad.append(str(row))
        entry = self.rejected.setdefault(row.kind, [0])
        entry[0] += 1
        if len(entry) <= REJECTION_SAMPLE:
            entry.append(row.line)

    def rejections(self, path: Path) -> list[str]:
        """One line per reason: how many rows, and the first line numbers to look at."""
        return [f"{path}: {count} rows rejected: {reason} (lines {', '.join(map(str, lines))}"
                f"{', ...' if count > len(lines) else ''})"
                for reason, (count, *lines) in sorted(self.rejected.items(), key=lambda item: -item[1][0])]

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        state = "interrupted after" if self.interrupted else "sent"
        return (
            f"{state} {self.ticks} ticks ({self.rows} rows) in {self.seconds:.1f} s, "
            f"{self.bad_rows} bad rows, {self.failed_sends} failed sends, {rate:,.0f} rows/s"
            + (f", {self.already_sent} rows skipped as already landed" if self.already_sent else "")
        )


REJECTION_SAMPLE = 5
"""Bad rows logged one by one (and line numbers kept per reason); the rest are only counted."""


def _absorb(stats: ReplayStats, chunk: Chunk, path: Path) -> None:
    """Count what the reader read (:mod:`stockpulse.replay.tick_feed`); the first bad rows are
    logged one by one, the rest only counted."""
    for row in chunk.bad:
        if stats.bad_rows < REJECTION_SAMPLE:
            logger.warning("skipped bad row %s", row)
        elif stats.bad_rows == REJECTION_SAMPLE:
            logger.warning("more bad rows: counted by reason in the summary")
        stats.reject(row)
    stats.valid_rows += chunk.valid_rows
    stats.already_sent += chunk.already_sent
    for _ in range(chunk.laps):
        logger.info("reached the end of %s, starting again (--loop)", path)


def _fed_ticks(feed: TickFeed, stats: ReplayStats) -> Iterator[Tick]:
    for chunk in feed.chunks():
        _absorb(stats, chunk, feed.path)
        yield from chunk.ticks


LINGER_MS = 20
DRAIN_MARGIN_SECONDS = 15
"""How long past the delivery timeout the final flush waits for the client to report each send."""


def has_native_crc32c() -> bool:
    """Whether kafka-python will checksum batches in C: it uses the ``crc32c`` package when it
    is installed (``kafka-python[crc32c]``), else a pure-Python loop over every byte."""
    try:
        from crc32c import crc32c  # noqa: F401  the import kafka-python itself tries
    except ImportError:
        return False
    return True


def compression_for(native_crc32c: bool) -> str | None:
    """gzip while the checksum is pure Python, none once it is native.

    Each batch's CRC-32C covers its bytes as sent. In pure Python it runs at ~4.5 MB/s, holding
    the GIL: 63% of the I/O thread's time in a profile, as much CPU per row as all the parsing.
    gzip (stdlib: the other codecs need extra packages) shrinks these JSON batches ~5x, and the
    checksum with them, and zlib works without the GIL. Once the checksum is native, gzip's
    level 9 (fixed by kafka-python) costs more than it saves.
    """
    return None if native_crc32c else "gzip"


MAX_KEY_PICKS = 4096
"""Keys a partitioner remembers; beyond that it starts afresh (index symbols number a few dozen)."""


def key_hash_partitioner():
    """kafka-python's default partitioner, with each key's partition worked out once.

    Same answer as the default: :func:`~stockpulse.replay.resume.key_partition`, the Java
    client's murmur2 rule that ``--resume`` and per-index order rely on, over the sorted
    partition ids. But that pure-Python murmur2 was 10% of the sending thread's time, spent
    hashing the same few index names on every message. Records without a key, and topics the
    client does not know yet, take the default's own path. Built here so that importing this
    module does not import kafka-python.
    """
    from kafka.partitioner import DefaultPartitioner

    class KeyHashPartitioner(DefaultPartitioner):
        def __init__(self) -> None:
            self.picks: dict[tuple[bytes, int], int] = {}

        def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
            partitions = None if serialized_key is None else cluster.partitions_for_topic(topic)
            if not partitions:
                return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            count = len(partitions)
            pick = self.picks.get((serialized_key, count))
            if pick is None:
                if len(self.picks) >= MAX_KEY_PICKS:
                    self.picks.clear()
                pick = self.picks[serialized_key, count] = key_partition(serialized_key, count)
            return sorted(partitions)[pick]

    return KeyHashPartitioner()


CLIENTS = ("kafka-python", "confluent")
"""The producer's Kafka clients: the default, and the faster one a user asks for."""


def unreachable(bootstrap_servers: str) -> ServiceError:
    """The one error for a broker that cannot be reached at start, whichever the client."""
    return ServiceError(f"cannot reach Kafka at {bootstrap_servers}: start it with 'make services' "
                        "or set KAFKA_BOOTSTRAP_SERVERS")


def make_producer(bootstrap_servers: str, delivery_timeout: float = 120, client: str = "kafka-python"):
    """The producer's client: kafka-python, or librdkafka's (``client="confluent"``, same
    guarantees: :mod:`stockpulse.replay.confluent_client`).

    kafka-python's: acks=all and idempotent, so a retried send is never written twice
    and per-key order survives retries; batching (linger 20 ms, 256 KiB) for throughput, gzip
    while the client's checksum is pure Python (:func:`compression_for`), and each key hashed
    once (:func:`key_hash_partitioner`). A send that is not acknowledged within
    ``delivery_timeout`` seconds fails (its request timeout stays below that, as the client
    requires)."""
    delivery_ms = int(delivery_timeout * 1000)
    if client == "confluent":
        from stockpulse.replay.confluent_client import BrokerUnreachable, ConfluentProducer, settings

        try:
            return ConfluentProducer(settings(bootstrap_servers, delivery_ms, LINGER_MS))
        except BrokerUnreachable:
            raise unreachable(bootstrap_servers) from None
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=LINGER_MS,
            batch_size=256 * 1024,
            compression_type=compression_for(has_native_crc32c()),
            partitioner=key_hash_partitioner(),
            enable_idempotence=True,
            delivery_timeout_ms=delivery_ms,
            request_timeout_ms=min(30_000, delivery_ms - LINGER_MS - 1),
        )
    except KafkaError:
        raise unreachable(bootstrap_servers) from None


def replay(
    csv_path: Path,
    topic: str,
    producer,
    tick_interval: float = 1.0,
    limit: int | None = None,
    loop: bool = False,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    start_date: date | None = None,
    resume: ResumePoint | None = None,
    stop: threading.Event | None = None,
    drain_timeout: float = 135.0,
) -> ReplayStats:
    """Send ticks until the file (or ``limit``) is exhausted, or ``stop`` is set; then flush.

    The rows come from a reader process (:class:`~stockpulse.replay.tick_feed.TickFeed`), encoded
    but for their tick's ``stream_ts``, which is taken when the tick is due. ``stop`` is checked
    between ticks and while waiting for the next one (or for the reader), so a Ctrl-C never
    splits a tick (its rows share one ``stream_ts``) and never lands inside the client's own
    code, and the summary's row count is exactly what reached the broker. A KeyboardInterrupt
    (callers without an event) still stops after a flush. With ``resume``, rows already in the
    topic are skipped (counted in ``already_sent``).

    The final flush waits at most ``drain_timeout`` seconds (a bit more than the delivery
    timeout): with its broker gone mid-request, kafka-python 3.0's idempotent producer can leave
    records that never complete, and an unbounded flush then hangs for good, deaf to signals.
    Records still pending then count as failed sends.
    """
    stop = stop or threading.Event()
    stats = ReplayStats()
    started = time.monotonic()
    next_due = started

    counted = threading.Lock()  # the callbacks run on the client's I/O thread
    sent = [0]  # records handed to the client
    given_up = threading.Event()  # pending records were counted as failed: later callbacks change nothing

    def acked(_metadata) -> None:
        with counted:
            if not given_up.is_set():
                stats.rows += 1

    def failed(exc: BaseException) -> None:
        with counted:
            if given_up.is_set():
                return
            stats.failed_sends += 1
            failures = stats.failed_sends
        if failures <= REJECTION_SAMPLE or failures % 1000 == 0:
            name, detail = type(exc).__name__, str(exc)  # kafka-python's text may start with the name already
            logger.error("send failed (%d so far): %s", failures, detail if detail.startswith(name) else f"{name}: {detail}")

    feed = None
    try:
        feed = TickFeed(csv_path, loop, start_date, resume, stop)
        for tick in _fed_ticks(feed, stats):
            if limit is not None and stats.ticks >= limit:
                break
            if stop.is_set():
                stats.interrupted = True
                break
            if tick_interval > 0:
                delay = next_due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    stats.interrupted = True
                    break
                next_due = max(next_due + tick_interval, time.monotonic() - tick_interval)
            head = message_head(format_stream_ts(clock()))
            for key, tail in tick:
                future = producer.send(topic, key=key, value=head + tail)
                sent[0] += 1
                future.add_callback(acked)
                future.add_errback(failed)
            stats.ticks += 1
            if progress:
                progress(len(tick))
        else:
            stats.interrupted = stop.is_set() and not feed.finished  # the feed saw the stop first
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        if feed is not None:
            feed.close()
        def pending() -> int:
            with counted:
                return sent[0] - stats.rows - stats.failed_sends

        drain(producer, pending, drain_timeout, stop)
        with counted:  # one step: a callback between counting and giving up would be counted twice
            given_up.set()
            left = max(sent[0] - stats.rows - stats.failed_sends, 0)
            stats.failed_sends += left
        if left:
            logger.error("%d sends were not acknowledged within %.0f s (the broker is gone?): counted as failed",
                         left, drain_timeout)
        stats.seconds = time.monotonic() - started
    return stats


def close_producer(producer, timeout: float = 10) -> None:
    """Close the client without a traceback when records are stuck.

    kafka-python 3.0's ``close`` flushes first, and a batch its idempotent sender never completes
    (see :func:`replay`) makes that flush raise whatever the timeout; its ``__del__`` at exit then
    tries again and prints the same traceback. Those records are already counted as failed, so
    the client's I/O thread is stopped without them and the client marked closed (its private
    ``_sender`` and ``_closed``, kafka-python pinned in requirements-lock.txt).
    """
    from kafka.errors import KafkaTimeoutError

    try:
        producer.close(timeout=timeout)
    except KafkaTimeoutError:
        logger.warning("the Kafka client could not deliver its last records: closing it without them")
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True


STOPPED_DRAIN_SECONDS = 5.0
"""How long the final flush still waits once a signal asked the producer to stop."""


def drain(producer, pending: Callable[[], int], timeout: float, stop: threading.Event | None = None) -> int:
    """Flush until no send is pending or ``timeout`` seconds have passed; how many are left.

    Flushes in one-second slices: kafka-python's ``flush(timeout)`` applies its timeout to each
    batch in turn, so one long flush is not bounded by it. Once ``stop`` is set (a signal), it
    waits at most :data:`STOPPED_DRAIN_SECONDS` more: a user who pressed Ctrl-C on a producer
    whose broker is gone should not wait two minutes.
    """
    from kafka.errors import KafkaTimeoutError

    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            deadline = min(deadline, time.monotonic() + STOPPED_DRAIN_SECONDS)
            stop = None
        try:
            producer.flush(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
        except KafkaTimeoutError:
            pass
        if pending() <= 0 or time.monotonic() >= deadline:
            return max(pending(), 0)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def build_parser(defaults: KafkaSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer.py", description="Replay stock-index history into Kafka as live ticks."
    )
    parser.add_argument("--csv", type=Path, default=PROJECT_ROOT / "data" / "indexProcessed.csv",
                        help="processed CSV to replay (default: data/indexProcessed.csv)")
    parser.add_argument("--topic", default=defaults.topic, help=f"Kafka topic (default: {defaults.topic})")
    parser.add_argument("--bootstrap-servers", default=defaults.bootstrap_servers,
                        help=f"Kafka bootstrap servers (default: {defaults.bootstrap_servers})")
    parser.add_argument("--tick-interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between ticks; 0 sends as fast as the broker takes them (default 1.0)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N ticks")
    parser.add_argument("--loop", action="store_true", help="start again at the end of the file")
    parser.add_argument("--start-date", type=_iso_date, default=None, metavar="YYYY-MM-DD",
                        help="skip trading dates before this one (1997-07-02 is the first with all five indices)")
    parser.add_argument("--resume", action="store_true",
                        help="skip rows the topic already holds, so a killed or repeated replay continues "
                             "where it left off instead of sending history twice")
    parser.add_argument("--client", default=os.environ.get("PRODUCER_CLIENT") or CLIENTS[0],
                        help="Kafka client: kafka-python (the default) or confluent (librdkafka, faster); "
                             "default: PRODUCER_CLIENT or kafka-python")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return parser


def find_resume_point(bootstrap_servers: str, topic: str) -> ResumePoint:
    """Read the newest records of ``topic`` and say where the replay stands."""
    from stockpulse.kafka_offsets import KafkaOffsetsError, newest_records
    from stockpulse.replay.resume import TAIL_WINDOW, resume_point

    try:
        records = newest_records(bootstrap_servers, topic, TAIL_WINDOW)
    except KafkaOffsetsError as exc:
        raise ServiceError(f"--resume: {exc}") from None
    point = resume_point(records)
    logger.info("--resume: %s", point.describe())
    return point


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM (from `make down`) both set ``stop``: finish the tick, flush, summarise.

    The previous handlers come back on exit, so calling :func:`main` in-process leaves the
    caller's signal handling as it was.
    """

    def request_stop(signum, _frame) -> None:
        if not stop.is_set():
            logger.info("%s: stopping after the current tick", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """CLI: 0 when done, 130 when stopped by a signal, 1 when sends failed, 2 for bad input or
    an unreachable broker."""
    stop = threading.Event()
    with _stop_on_signals(stop):
        return _run(argv, stop)


def _run(argv: list[str] | None, stop: threading.Event) -> int:
    try:
        settings = KafkaSettings.from_env()
        args = build_parser(settings).parse_args(argv)
        if args.tick_interval < 0 or (args.limit is not None and args.limit < 0):
            raise StockPulseError("--tick-interval and --limit must not be negative")
        if args.client not in CLIENTS:
            raise StockPulseError(f"--client/PRODUCER_CLIENT {args.client!r}: use {' or '.join(CLIENTS)}")
        check_header(args.csv)
        delivery_timeout = env_int(os.environ, "PRODUCER_DELIVERY_TIMEOUT_SECONDS",
                                   ProducerSettings.delivery_timeout, 2)
        producer = make_producer(args.bootstrap_servers, delivery_timeout, args.client)
        resume = (find_resume_point(args.bootstrap_servers, args.topic)
                  if args.resume else None)
    except StockPulseError as exc:
        print(f"producer: error: {exc}", file=sys.stderr)
        return 2
    bar = None
    if sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit=" rows", desc="replaying", dynamic_ncols=True)
    logger.info("replaying %s into %s at %s (%s)", args.csv, args.topic, args.bootstrap_servers, args.client)
    try:
        stats = replay(args.csv, args.topic, producer, args.tick_interval, args.limit, args.loop,
                       progress=bar.update if bar else None, start_date=args.start_date, resume=resume,
                       stop=stop, drain_timeout=delivery_timeout + DRAIN_MARGIN_SECONDS)
    except StockPulseError as exc:
        print(f"producer: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar:
            bar.close()
        close_producer(producer)
    for line in stats.rejections(args.csv):
        print(line, file=sys.stderr)
    print(stats.summary(), file=sys.stderr)
    if stats.failed_sends:
        return 1
    if stats.interrupted:
        return 130
    if stats.valid_rows == 0:
        print(f"producer: error: {args.csv} holds no valid row: nothing was sent", file=sys.stderr)
        return 2
    return 0
