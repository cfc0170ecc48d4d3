"""CLI of the streaming job (``consumer/consumer.py`` is the thin entry point)."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from stockpulse.config import PROJECT_ROOT
from stockpulse.errors import StockPulseError

logger = logging.getLogger(__name__)


def ship_package(spark) -> None:
    """Make ``stockpulse`` importable in every Python worker, local or on a cluster.

    Local workers inherit PYTHONPATH (set in :func:`main`); cluster executors get a zip through
    ``addPyFile``.
    """
    staging = Path(tempfile.mkdtemp(prefix="stockpulse-pyfiles-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    archive = shutil.make_archive(str(staging / "stockpulse"), "zip", root_dir=PROJECT_ROOT, base_dir="stockpulse")
    spark.sparkContext.addPyFile(archive)


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
    try:
        from stockpulse.db import apply_init_sql
        from stockpulse.job import JobSettings, build_session, start_queries, wait_for
        from stockpulse.lake import remove_uncommitted

        job = JobSettings.from_env()
        apply_init_sql(job.postgres.url)
        remove_uncommitted(job.consumer.lake_path)
        spark = build_session(job.consumer, args.master)
        ship_package(spark)
        queries = start_queries(spark, job, once=args.once)
    except StockPulseError as exc:
        print(f"consumer: error: {exc}", file=sys.stderr)
        return 2
    try:
        wait_for(queries)
    except KeyboardInterrupt:
        logger.info("interrupted: stopping queries")
        for query in queries:
            query.stop()
    except Exception as exc:  # a failed query: its message, not a JVM stack trace
        message = str(getattr(exc, "desc", None) or exc).strip().splitlines()
        print(f"consumer: error: query failed: {message[0] if message else type(exc).__name__}", file=sys.stderr)
        logger.debug("query failure", exc_info=True)
        return 1
    logger.info("all queries finished")
    if args.progress_file:
        progress = {q.name: [json.loads(p.json) for p in q.recentProgress] for q in queries}
        args.progress_file.write_text(json.dumps(progress, indent=1, default=str))
    return 0
