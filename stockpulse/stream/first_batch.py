"""A small first micro-batch: a job that starts on a backlog lands its first rows in seconds.

A job's first micro-batch runs cold: class loading, code generation and the JIT compiling the
hot code as it goes. With 100,000 messages it was 10-14 s of a ~20 s start-up, measured; with
5,000 the same start-up was 12.6-14.5 s (``docs/performance.md``, sixth round). Spark caps every
micro-batch of a query alike, so each query first runs with ``FIRST_BATCH_OFFSETS`` as its cap
and a trigger that never comes again, and is stopped once that trigger is over (nothing is in
flight then, so nothing is cancelled). It is then started again from the same checkpoint with
the job's own cap and trigger: exactly-once rests on the checkpoint, as on any restart. Each
query moves on by itself, so a lake query does not wait on a PostgreSQL that is down.

Under ``--once``, a query whose first trigger found no data is done; any other is started
again with ``availableNow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from stockpulse.config import ConsumerSettings

logger = logging.getLogger(__name__)

NEVER_AGAIN = {"processingTime": "52560000 minutes"}
"""The first batch's trigger: Spark runs a processing-time trigger at once, then at the next
multiple of the interval since 1970; for these hundred years, in 2070. The query is stopped long
before. (Were a second batch to run, it would be committed whole first: nothing is lost.)"""


def first_batch_cap(settings: ConsumerSettings) -> int:
    """The first micro-batch's cap, or 0 when the job's own cap is no larger (nothing to gain)."""
    cap, usual = settings.first_batch_offsets, settings.max_offsets_per_trigger
    return cap if cap and (not usual or cap < usual) else 0


def found_nothing(progress: Mapping | None) -> bool:
    """Whether a first trigger's progress report says it found no data: then ``--once`` is done,
    since ``availableNow`` would have found none either.

    A trigger that ran a batch never counts, even one whose report says it read up to the latest
    offset: on a restart, the first trigger replays the batch the checkpoint had planned, and its
    report is no account of what the source holds now (a SIGKILL test lost the lake's backlog to
    that). No report at all (a query that ended before its first trigger) does not count either.
    """
    if progress is None or progress.get("numInputRows"):
        return False
    return all(s.get("startOffset") == s.get("endOffset") for s in progress.get("sources") or [])


def first_trigger_over(query) -> bool:
    """Whether ``query`` has finished its first trigger. Spark keeps a progress report for a
    first trigger with data and for one without (no listener event is posted for the latter: a
    first idle trigger only records its report), and clears ``isTriggerActive`` after it."""
    return query.lastProgress is not None and not query.status["isTriggerActive"]


def settle(first: dict, restart: Callable[[str, object], object | None],
           over: Callable[[object], bool] = first_trigger_over, poll_seconds: float = 0.2) -> dict:
    """Wait for each query of ``first`` (``{sink: query}``) to finish its first trigger, stop it,
    and put in its place what ``restart(sink, query)`` starts (None: the query is done as it is).

    A query that fails, or a restart that Spark refuses, raises here after every other query is
    stopped. Returns ``{sink: query}`` to wait on.
    """
    final: dict = {}
    pending = dict(first)

    def stop_all_and_raise(error: BaseException):
        for other in [*pending.values(), *final.values()]:
            if other.isActive:
                other.stop()
        raise error

    while pending:
        for sink, query in list(pending.items()):
            active = query.isActive  # read before the error: a query that fails in between is caught below
            error = query.exception()
            if error is not None:
                stop_all_and_raise(error)
            if active and not over(query):
                continue
            query.stop()
            try:
                final[sink] = restart(sink, query) or query
            except Exception as exc:  # noqa: BLE001 - re-raised once the other queries are stopped
                stop_all_and_raise(exc)
            del pending[sink]
        if pending:
            time.sleep(poll_seconds)
    return final


def describe(progress: Mapping | None, cap: int) -> str:
    """How a first batch went, for the log line: its rows and seconds, and whether it was a batch
    the checkpoint had planned before a restart (replayed at its own size, above the cap)."""
    if progress is None or not progress.get("numInputRows"):
        return "no data"
    rows = progress["numInputRows"]
    replayed = " (a batch planned before the restart, replayed as it was)" if rows > cap else ""
    return f"{rows:,} messages in {progress.get('batchDuration', 0) / 1000:.1f} s{replayed}"
