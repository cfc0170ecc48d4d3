"""Read, check and encode the CSV in a child process, so that the sending process only sends.

Why a process: py-spy put the CSV's reading and checks and the JSON encoding at ~43% of the
sending thread (``docs/performance.md``, third round), and that thread shares one GIL with
kafka-python's I/O thread. Out of the way, the sending process does kafka-python's ``send`` and
little else; the reader, on the other core, parses ~50,000-60,000 messages/s here, more than a
sender can send. The child only reads the file: every count, bad row and error goes back to the
parent, which logs and reports them as before.

What crosses the queue is a :class:`Chunk`: up to :data:`CHUNK_TICKS` ticks, each a list of
``(key, message tail)`` pairs (:func:`~stockpulse.replay.csv_rows.message_tail`: a message
without its ``stream_ts``, which the sender adds when the tick is due), with the counts of the
rows read meanwhile. The queue holds at most :data:`QUEUED_CHUNKS`, so a paced replay reads
ahead a few thousand ticks at most.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queues
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

from stockpulse.errors import StockPulseError
from stockpulse.replay.csv_rows import BadRow, TickRow, group_ticks, message_tail, read_rows
from stockpulse.replay.resume import ResumePoint

logger = logging.getLogger(__name__)

CHUNK_TICKS = 200
"""Ticks per chunk (~700 messages): large enough that pickling is a small share, small enough
that the first tick goes out at once."""
QUEUED_CHUNKS = 16
POLL_SECONDS = 0.2
"""How often the sender, waiting for a chunk, checks its stop event and the reader's life."""

Tick = list[tuple[bytes, bytes]]


class FeedError(StockPulseError):
    """The reader failed (its file, say, vanished mid-read) or died: a one-line reason."""


@dataclass
class Chunk:
    """What the reader read since its last chunk."""

    ticks: list[Tick] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    valid_rows: int = 0  # rows that passed validation, sent or not
    already_sent: int = 0  # skipped by --resume
    laps: int = 0  # times --loop started the file again
    done: bool = False  # the last chunk: the file (and any --loop) is exhausted
    error: str | None = None


def ticks(path: Path, loop: bool, tally: Chunk, start_date: date | None = None,
          resume: ResumePoint | None = None) -> Iterator[list[TickRow]]:
    """The file's ticks after the start date and the resume point, counted into ``tally``.

    With ``resume`` only the first pass skips landed rows: a ``--loop`` pass after it sends
    everything. A pass that yields nothing ends a loop, unless it was the skipping one.
    """
    skip_landed = resume is not None
    while True:
        produced = False
        rows = _good_rows(path, tally)
        if start_date is not None:
            rows = (r for r in rows if r.date >= start_date)
        if skip_landed:
            rows = _unsent(rows, resume, tally)
        for tick in group_ticks(rows):
            produced = True
            yield tick
        if not loop or not (produced or skip_landed):
            return
        skip_landed = False
        tally.laps += 1


def _good_rows(path: Path, tally: Chunk) -> Iterator[TickRow]:
    for item in read_rows(path):
        if isinstance(item, BadRow):
            tally.bad.append(item)
            continue
        tally.valid_rows += 1
        yield item


def _unsent(rows: Iterator[TickRow], point: ResumePoint, tally: Chunk) -> Iterator[TickRow]:
    for row in rows:
        if point.landed(row):
            tally.already_sent += 1
            continue
        yield row


def _take(tally: Chunk) -> Chunk:
    """The tally so far as a chunk, and the tally emptied (the generator keeps counting into it)."""
    chunk = Chunk(tally.ticks, tally.bad, tally.valid_rows, tally.already_sent, tally.laps)
    tally.ticks, tally.bad, tally.valid_rows, tally.already_sent, tally.laps = [], [], 0, 0, 0
    return chunk


def read_chunks(path: Path, loop: bool, start_date: date | None, resume: ResumePoint | None) -> Iterator[Chunk]:
    """The reader's work as chunks, the last one ``done`` or carrying an ``error``: pure but for
    reading the file, so tests can run it in-process."""
    tally = Chunk()
    try:
        for tick in ticks(path, loop, tally, start_date, resume):
            tally.ticks.append([(row.index.encode("utf-8"), message_tail(row)) for row in tick])
            if len(tally.ticks) >= CHUNK_TICKS:
                yield _take(tally)
    except (StockPulseError, OSError) as exc:
        last = _take(tally)
        last.error = str(exc) if isinstance(exc, StockPulseError) else f"{path}: cannot read: {exc}"
        yield last
        return
    last = _take(tally)
    last.done = True
    yield last


def _reader(path: Path, loop: bool, start_date: date | None, resume: ResumePoint | None, out) -> None:
    """The child's entry point.

    It ignores SIGINT and SIGTERM: Ctrl-C and ``make down`` reach the whole process group, and
    the parent handles both (finishes the tick, flushes, then kills this process with SIGKILL). A
    child killed by them mid-write would leave half a chunk in the pipe, which the parent's read
    would wait on for good. Instead it watches the parent: a parent gone without stopping it (a
    SIGKILL) ends it too, without waiting to flush a queue nobody reads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    for chunk in read_chunks(path, loop, start_date, resume):
        while True:
            try:
                out.put(chunk, timeout=POLL_SECONDS * 5)
                break
            except queues.Full:
                if parent is not None and not parent.is_alive():
                    out.cancel_join_thread()
                    return


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while the child starts: an ignored signal survives ``exec``, and
    Python leaves it ignored, so a signal before :func:`_reader` runs cannot end it mid-start or
    print a traceback there. Only the main thread may touch signal handlers; elsewhere the
    child's own lines suffice."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class TickFeed:
    """The parent's side: start the reader, hand over its chunks, stop it.

    ``spawn``, not ``fork``: by the time the replay starts, the Kafka client's I/O thread runs,
    and a forked child of a threaded process may inherit a lock held mid-operation.
    """

    def __init__(self, path: Path, loop: bool = False, start_date: date | None = None,
                 resume: ResumePoint | None = None, stop: threading.Event | None = None) -> None:
        self.path = path
        self.stop = stop or threading.Event()
        self.finished = False  # the reader read everything there was to read
        context = multiprocessing.get_context("spawn")
        self.queue = context.Queue(QUEUED_CHUNKS)
        self.process = context.Process(target=_reader, args=(path, loop, start_date, resume, self.queue),
                                       name="stockpulse-csv-reader", daemon=True)
        with _signals_ignored():
            self.process.start()

    def chunks(self) -> Iterator[Chunk]:
        """Chunks in file order until the reader is done, the stop event is set, or the reader
        fails (:class:`FeedError`)."""
        while not self.finished:
            try:
                chunk = self.queue.get(timeout=POLL_SECONDS)
            except queues.Empty:
                if self.stop.is_set():
                    return
                if not self.process.is_alive():
                    try:  # what it put just before it ended may still be in the pipe
                        chunk = self.queue.get(timeout=POLL_SECONDS)
                    except queues.Empty:
                        raise FeedError(f"{self.path}: the process reading it ended (exit code "
                                        f"{self.process.exitcode}) before the end of the file") from None
                else:
                    continue
            if chunk.error is not None:
                yield chunk  # its rows and counts are good: the caller keeps them, then fails
                raise FeedError(chunk.error)
            self.finished = chunk.done
            yield chunk

    def close(self) -> None:
        """Stop the reader (it may be blocked on a full queue, far ahead of the sender)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.queue.close()
        self.queue.join_thread()


@contextmanager
def tick_feed(path: Path, loop: bool = False, start_date: date | None = None, resume: ResumePoint | None = None,
              stop: threading.Event | None = None) -> Iterator[TickFeed]:
    """A :class:`TickFeed` that is closed on the way out, whatever happened."""
    feed = TickFeed(path, loop, start_date, resume, stop)
    try:
        yield feed
    finally:
        feed.close()
