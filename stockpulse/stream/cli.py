"""CLI of the streaming job (``consumer/consumer.py`` is the thin entry point): settings, the job
lock (:mod:`stockpulse.stream.job_files`), the lake's tidy-up, the Spark session and its queries,
then one line for whatever ends them."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from stockpulse.config import PROJECT_ROOT
from stockpulse.errors import StockPulseError
from stockpulse.locks import try_lock
from stockpulse.stream.job_files import Heartbeat, JobFiles, heartbeat_listener, hold_job_lock

logger = logging.getLogger(__name__)


_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+)$")


def failure_summary(message: str) -> str:
    """One line from a failed query's message: the error our Python code raised when the message
    carries a Python worker's traceback (Spark puts it after a generic first line), else the
    message's first line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    if any("Traceback (most recent call last)" in line for line in lines):
        for line in reversed(lines):
            raised = _RAISED.match(line)
            if raised:
                return f"{raised.group(1)}: {raised.group(2)}"
    return lines[0]


PACKAGE_STAGING_PREFIX = "stockpulse-pyfiles-"
STAGING_LOCK = ".in-use.lock"


def remove_orphaned_packages(directory: Path) -> list[Path]:
    """Remove the package zips of jobs that are gone. A job stopped by SIGTERM or SIGKILL (``make
    down``, a supervisor's restart) never runs its ``atexit``, and left one directory per stop.
    Each job holds a lock in its own (:mod:`stockpulse.locks`: it dies with the process), so a
    directory whose lock can be taken is an orphan; one without a lock file is left alone."""
    removed = []
    for staging in directory.glob(f"{PACKAGE_STAGING_PREFIX}*"):
        if not (staging / STAGING_LOCK).is_file():
            continue
        handle = try_lock(staging / STAGING_LOCK)
        if handle is None:  # its job runs
            continue
        handle.close()
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def ship_package(spark) -> IO[str]:
    """Make ``stockpulse`` importable in every Python worker, local or on a cluster; returns the
    lock that marks the zip as in use (keep it open for the job's life).

    Local workers inherit PYTHONPATH (set in :func:`main`); cluster executors get a zip through
    ``addPyFile``, which serves it from where it is for the job's whole life.
    """
    remove_orphaned_packages(Path(tempfile.gettempdir()))
    staging = Path(tempfile.mkdtemp(prefix=PACKAGE_STAGING_PREFIX))
    in_use = try_lock(staging / STAGING_LOCK)
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    archive = shutil.make_archive(str(staging / "stockpulse"), "zip", root_dir=PROJECT_ROOT, base_dir="stockpulse")
    spark.sparkContext.addPyFile(archive)
    return in_use


class RunningJob:
    """The job's session, listener and queries, filled in as they start, so that a SIGTERM while
    the class archive is written (:func:`stockpulse.stream.class_archive.finish_on_sigterm`) can
    stop them before the JVM goes."""

    def __init__(self) -> None:
        self.spark = None
        self.listener = None
        self.queries: list = []

    def detach(self) -> None:
        """Remove the Python listener: events still queued would otherwise call back into a Python
        process that is exiting and print py4j stack traces."""
        if self.spark is not None and self.listener is not None:
            self.spark.streams.removeListener(self.listener)
            self.listener = None

    def stop(self, budget_seconds: float, poll_seconds: float = 0.1) -> None:
        """Detach, let a batch in flight finish, stop each query, then let the listener's last
        event finish, in about ``budget_seconds``.

        Stopping a query cancels its running Spark job, and the cancelled lake write and JDBC COPY
        each print stack traces (the batch is not committed: the next start replays it). So the
        queries are stopped at a moment when no trigger is active, if one comes within 40% of the
        budget; a job with a backlog runs batches back to back and may not offer one. Detaching
        stops new events, not one the listener is handling: pyspark converts each event with
        dozens of py4j calls, which fail with stack traces if the gateway closes meanwhile.
        """
        self.detach()
        if self.spark is None:
            return
        queries = self.active()
        if queries:
            deadline = time.monotonic() + budget_seconds * 0.4
            while time.monotonic() < deadline and any(q.isActive and q.status["isTriggerActive"] for q in queries):
                time.sleep(poll_seconds)
            self._stop_queries(queries, max(1000, int(budget_seconds * 1000 * 0.4 / len(queries))))
        try:
            self.spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(int(budget_seconds * 1000 * 0.2))
        except Exception:  # noqa: BLE001 - a TimeoutException: the JVM goes anyway
            logger.debug("listener bus not empty", exc_info=True)

    def active(self) -> list:
        """The session's running queries: Spark's own list, which also holds a query that is being
        started again after its first batch (:mod:`stockpulse.stream.first_batch`) before
        :attr:`queries` names it."""
        try:
            return list(self.spark.streams.active)
        except Exception:  # noqa: BLE001 - the gateway is going: the queries known to this process
            logger.debug("cannot list the active queries", exc_info=True)
            return [q for q in self.queries if q.isActive]

    def _stop_queries(self, queries: list, each_ms: int) -> None:
        self.spark.conf.set("spark.sql.streaming.stopTimeout", str(each_ms))
        for query in queries:  # one that does not stop in time must not keep the other running
            try:
                query.stop()
            except Exception as exc:  # noqa: BLE001 - Spark's TimeoutException: the JVM's exit ends it
                logger.warning("query %s did not stop within %.1f s: %s", query.name, each_ms / 1000,
                               str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def discard(archive) -> None:
    """Drop the class archive a failed job's JVM would write as it exits (:mod:`class_archive`)."""
    if archive is not None:
        from stockpulse.stream.class_archive import discard as discard_archive

        discard_archive(archive)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consumer.py",
        description="Stream ticks from Kafka into the Parquet lake and PostgreSQL (Spark Structured Streaming).",
    )
    parser.add_argument("--once", action="store_true",
                        help="process everything available at start, then exit (tests, backfills, Airflow)")
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[2])")
    parser.add_argument("--progress-file", type=Path, default=None,
                        help="on exit, write each query's recent progress reports (JSON) here (the benchmark reads it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """0 when the job ends normally, 1 when a query fails, 2 for bad settings or services."""
    args = build_parser().parse_args(argv)
    # PYTHONPATH must be set before the JVM starts so local workers inherit it.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    archive = None  # the JVM class archive this start maps or writes
    running = RunningJob()
    try:
        from stockpulse.config import POSTGRES_SINK, SINKS, StackSettings
        from stockpulse.db import apply_init_sql
        from stockpulse.stream.first_batch import NEVER_AGAIN, describe, first_batch_cap, found_nothing, settle
        from stockpulse.stream.job import (
            JobSettings, announce, build_session, class_archive_plan, connector_jars, postgres_writer_jars,
            query_starter, triggers, wait_for,
        )
        from stockpulse.stream.class_archive import finish, finish_on_sigterm, jvm_pid, keep_sigterm_from_jvm, report
        from stockpulse.stream.lake import remove_uncommitted

        stack = StackSettings.from_env()
        job = JobSettings.of(stack)
        files = JobFiles.of(job.consumer.checkpoint_dir, stack.state_dir)
        # Before anything touches the lake or the checkpoints: tidying the lake under a running
        # job would delete the files of the batch it is writing.
        lock = hold_job_lock(files.lock, job.consumer.checkpoint_dir)  # noqa: F841 (held until exit)
        heartbeat = Heartbeat(files.heartbeat, os.getpid())
        apply_init_sql(job.postgres.url)
        remove_uncommitted(job.consumer.lake_path)
        jars = [*connector_jars(job.consumer.kafka_source), *postgres_writer_jars(job.postgres.writer)]
        archive = class_archive_plan(job.consumer, args.master)
        if archive is not None and archive.training is not None:
            keep_sigterm_from_jvm()  # this process stops it on SIGTERM, then lets it write (finish_on_sigterm)
        spark = build_session(job.consumer, args.master, jars, archive.java_options if archive else ())
        running.spark = spark
        report(archive, jvm_pid())
        finish_on_sigterm(archive, running.stop)
        package = ship_package(spark)  # noqa: F841 (its lock is held until exit)
        running.listener = heartbeat_listener(heartbeat)
        spark.streams.addListener(running.listener)
        start, trigger_of = query_starter(spark, job), triggers(job.consumer, args.once)
        cap = first_batch_cap(job.consumer)
        first = {sink: start(sink, NEVER_AGAIN, cap) if cap else start(sink, trigger_of[sink]) for sink in SINKS}
        running.queries = list(first.values())
        started = list(running.queries)  # every query run of this job, for the progress file
        heartbeat.expect(running.queries)
        announce(job, "", job.consumer.checkpoint_dir, trigger_of[POSTGRES_SINK])
    except StockPulseError as exc:
        print(f"consumer: error: {exc}", file=sys.stderr)
        discard(archive)
        return 2
    except Exception as exc:  # Spark refused to start (a bad master URL, a bad option): one line
        print(f"consumer: error: cannot start the job: {failure_summary(str(getattr(exc, 'desc', None) or exc))}",
              file=sys.stderr)
        logger.debug("start-up failure", exc_info=True)
        discard(archive)
        return 1

    def restart(sink: str, query):
        """The query that follows a capped first batch (None under ``--once`` when there was no data)."""
        progress = query.lastProgress
        progress = json.loads(progress.json) if progress is not None else None
        done = args.once and found_nothing(progress)
        logger.info("%s: first micro-batch (at most %d messages): %s%s", query.name, cap, describe(progress, cap),
                    "; nothing was available" if done else "; continuing with the job's own batches")
        if done:
            return None
        again = start(sink, trigger_of[sink])
        started.append(again)
        return again

    try:
        if cap:  # a SIGTERM meanwhile stops what Spark runs (RunningJob.active), restarted ones included
            running.queries = list(settle(first, restart).values())
        wait_for(running.queries)
    except KeyboardInterrupt:
        logger.info("interrupted: stopping queries")
        for query in running.active():
            query.stop()
    except Exception as exc:  # a failed query: its message, not a JVM stack trace
        print(f"consumer: error: query failed: {failure_summary(str(getattr(exc, 'desc', None) or exc))}",
              file=sys.stderr)
        logger.debug("query failure", exc_info=True)
        discard(archive)
        return 1
    logger.info("all queries finished")
    if args.progress_file:
        progress: dict[str, list] = {}  # per query name, every run's reports in order (a report names its runId)
        for query in started:
            progress.setdefault(query.name, []).extend(json.loads(p.json) for p in query.recentProgress)
        args.progress_file.write_text(json.dumps(progress, indent=1, default=str))
    running.detach()
    spark.stop()
    finish(archive)
    return 0
