"""A small first micro-batch: a job that starts on a backlog lands its first rows in seconds.

A job's first micro-batch runs cold: class loading, code generation and the JIT compiling the
hot code as it goes. With 100,000 messages it was 10-14 s of a ~20 s start-up, measured; with
5,000 the same start-up was 12.6-14.5 s (``docs/performance.md``, sixth round). Spark caps every
micro-batch of a query alike, so each query first runs with ``FIRST_BATCH_OFFSETS`` as its cap
and a trigger that never comes again, and is stopped once that trigger is over (nothing is in
flight then, so nothing is cancelled). It is then started again from the same checkpoint with
the job's own cap and trigger: exactly-once rests on the checkpoint, as on any restart. Each
query moves on by itself, so a lake query does not wait on a PostgreSQL that is down.

Under ``--once``, a query whose first batch already read everything its source had at that
moment is done: what ``availableNow`` would have read is in it.
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


def read_all_available(progress: Mapping | None) -> bool:
    """Whether a first trigger's progress report says it read up to what its sources had.

    A trigger that found no data reports no rows (Spark keeps a report for it). No report at all
    (a query that ended before its first trigger), or a source that does not report its latest
    offset (the project's Python reader) after a batch with rows, counts as not caught up: the
    query is started again, which is always safe. The Kafka source's latest offset is the one it
    fetched before applying the cap.
    """
    if progress is None:
        return False
    sources = progress.get("sources") or []
    if sources and all(s.get("latestOffset") is not None for s in sources):
        return all(s.get("endOffset") == s.get("latestOffset") for s in sources)
    return not progress.get("numInputRows")


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


def describe(progress: Mapping | None) -> str:
    """How a first batch went, for the log line: its rows and seconds."""
    if progress is None:
        return "no data"
    return f"{progress.get('numInputRows', 0):,} messages in {progress.get('batchDuration', 0) / 1000:.1f} s"
