"""Measure the spine: producer rate, the broker's raw consume ceiling, end-to-end messages/s into
both sinks per Kafka source, the job's start-up, its memory, and latency.

Usage: python bench/bench_pipeline.py [--ticks 60000] [--large-messages 1000000] [--batch-rows 100000]
                                      [--latency-seconds 40] [--latency-rate 2000]
                                      [--latency-trigger "500 milliseconds"]
                                      [--latency-lake-trigger "10 seconds"] [--latency-warm-up 15]
                                      [--daily-ticks 0]

Everything runs on private services (an embedded PostgreSQL and an embedded Apache Kafka node on
free ports, under one temporary directory), so a running ``make up`` is untouched. Results go to
``bench/results/<UTC time>.json`` and ``bench/results/latest.json``. Figures from one run are
comparable with each other (same machine, same moment, same broker); compare ratios to the run's
own consume ceiling, not absolute numbers, across machines or runs. A message is one Kafka record
(one index on one date); a tick is one trading date, ~3.5 messages.

What is measured:
- producer: kafka-python, acks=all, idempotent, messages/s and ticks/s for the whole replay; then
  the same ticks with confluent-kafka (``--client confluent``, the explicit faster option);
- consume ceiling: one confluent-kafka consumer reading the large topic start to end (the ceiling
  every other figure is a share of), and the same with kafka-python;
- end to end: ``consumer.py --once`` (both sinks, layout ``index``) on ~1M messages with the
  official source, then on the small topic with the official source and with the project's Python
  reader (``KAFKA_SOURCE=python``), and the large topic once more with PostgreSQL written from the
  driver (``POSTGRES_WRITER=python``) instead of the executors (the job's log must name the
  writer), and the small topic once more without the JVM class archive (``JVM_CLASS_ARCHIVE=false``);
  a warm-up run first leaves the archive in place, as a user's first run does (each run records
  ``class_archive``: mapped, written or off); each run has its own fresh database, lake and checkpoints, and
  micro-batches capped at ``--batch-rows``. The job's log must name the source asked for.
  ``rows_per_s_wall`` divides by the whole run, JVM and Spark start-up included;
  ``rows_per_s_steady`` leaves out each query's warm-up (its small first batch, ``FIRST_BATCH_OFFSETS``,
  and the first full batch after it: JIT warm-up, first Python worker) and divides the remaining
  rows by the time from the end of the first full batch to the end of the last one, the later
  query deciding (``steady_from_s``). Both sinks' row counts must equal what was produced,
  else the benchmark stops with the counts: a fast but lossy run cannot pass;
- start-up: from the consumer process's start to the end of each query's first micro-batch with
  data (its progress report's ``timestamp`` plus ``triggerExecution``), the later query deciding:
  the first rows in both sinks, from the small first batch (``first_batch_rows`` at most);
- memory: RSS of the Spark JVM and the Python driver once a second, reported from the end of the
  warm-up (``steady_from_s``) to the end of the run, with the peak and the growth;
- latency: a streaming consumer (official source, ``--latency-trigger`` for PostgreSQL and
  ``--latency-lake-trigger`` for the lake) while
  the producer sends ``--latency-rate`` messages/s (ticks from 2000 on, paced); per row
  ``landed_at - kafka_timestamp`` (Kafka send time to PostgreSQL commit), p50/p95/p99/max after
  ``--latency-warm-up`` seconds of the same pace (and p99/max over every paced row beside them);
- optionally (``--daily-ticks N``, off by default: one Parquet file per row makes it slow) the
  ``index,date`` layout with the official source.

A benchmark, not a test: nothing here is asserted against a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procstats import descendants, kind_of, rss_bytes  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.config import DEFAULT_FIRST_BATCH_OFFSETS  # noqa: E402
from stockpulse.db import apply_init_sql, connect  # noqa: E402
from stockpulse.replay.producer import make_producer, replay  # noqa: E402
from stockpulse.ops.services.broker import EmbeddedKafka, ensure_topic  # noqa: E402
from stockpulse.jars import KAFKA_BROKER, pinned_version  # noqa: E402
from stockpulse.ops.services.postgres import EmbeddedPostgres  # noqa: E402
from stockpulse.ops.services.processes import free_port  # noqa: E402

logger = logging.getLogger("bench")
CSV = ROOT / "data" / "indexProcessed.csv"
PARTITIONS = 3
# KAFKA_SOURCE per measured source (None: the job's default) and what the job's log then says.
SOURCES = {"official": (None, "with the official Kafka source"),
           "python": ("python", "with the project's Python Kafka source")}


def produce(bootstrap: str, topic: str, ticks: int, interval: float = 0.0, start_date=None,
            client: str = "kafka-python") -> dict:
    producer = make_producer(bootstrap, client=client)
    try:
        stats = replay(CSV, topic, producer, tick_interval=interval, limit=ticks, loop=True, start_date=start_date)
    finally:
        producer.close()
    return {"client": client, "ticks": stats.ticks, "rows": stats.rows, "seconds": round(stats.seconds, 3),
            "rows_per_s": round(stats.rows / stats.seconds), "ticks_per_s": round(stats.ticks / stats.seconds)}


def consume_confluent(bootstrap: str, topic: str, expected: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                         "fetch.max.bytes": 16 << 20, "max.partition.fetch.bytes": 8 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen, started = 0, time.monotonic()
    while seen < expected and time.monotonic() - started < 300:
        seen += sum(1 for m in consumer.consume(10_000, timeout=1) if m.error() is None)
    seconds = time.monotonic() - started
    consumer.close()
    return {"client": "confluent-kafka", "rows": seen, "seconds": round(seconds, 3), "rows_per_s": round(seen / seconds)}


def consume_kafka_python(bootstrap: str, topic: str, expected: int) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, 0)
    seen, started = 0, time.monotonic()
    while seen < expected and time.monotonic() - started < 300:
        seen += sum(len(v) for v in consumer.poll(timeout_ms=1000, max_records=50_000).values())
    seconds = time.monotonic() - started
    consumer.close()
    return {"client": "kafka-python", "rows": seen, "seconds": round(seconds, 3), "rows_per_s": round(seen / seconds)}


def job_env(bootstrap: str, topic: str, url: str, work: Path, kafka_source: str | None, **extra: str) -> dict:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic, "DATABASE_URL": url,
           "LAKE_PATH": str(work / "lake"), "CHECKPOINT_DIR": str(work / "chk"),
           "STOCKPULSE_STATE_DIR": str(work / "state"), "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT), **extra}
    env.pop("KAFKA_SOURCE", None)
    if kafka_source:
        env["KAFKA_SOURCE"] = kafka_source
    return env


WRITERS = {"jvm": "PostgreSQL is written from the executors", "python": "PostgreSQL is written from the driver"}


def postgres_writer(log: str) -> str:
    """Which PostgreSQL writer the job's log says it used (``jvm`` or ``python``)."""
    named = [writer for writer, phrase in WRITERS.items() if phrase in log]
    if len(named) != 1:
        raise SystemExit(f"the job's log names no single PostgreSQL writer; its log:\n{log[-3000:]}")
    return named[0]


CLASS_ARCHIVE = {"mapped": "the JVM maps its classes from", "written": "wrote the JVM class archive"}


def class_archive(log: str) -> str:
    """What the run's JVM did with the class archive: ``mapped`` it, ``written`` it at exit, or ``off``."""
    return next((state for state, phrase in CLASS_ARCHIVE.items() if phrase in log), "off")


def check_source(log: str, source: str) -> None:
    """Stop unless the job's log says it read with ``source`` (and never with the other one)."""
    wanted = SOURCES[source][1]
    others = [phrase for name, (_, phrase) in SOURCES.items() if name != source]
    if wanted not in log or any(phrase in log for phrase in others):
        raise SystemExit(f"the {source} run did not read with the {source} Kafka source; its log:\n{log[-3000:]}")


def run_once(env: dict, progress_file: Path | None = None,
             memory: list | None = None) -> tuple[float, float, str]:
    """Run ``consumer.py --once``: (wall-clock start as epoch seconds, seconds it ran, its stderr).

    ``memory`` collects ``(seconds since start, {process kind: RSS bytes})`` once a second.
    """
    started_at, started = time.time(), time.monotonic()
    command = [sys.executable, str(ROOT / "consumer" / "consumer.py"), "--once"]
    if progress_file:
        command += ["--progress-file", str(progress_file)]
    with tempfile.TemporaryFile("w+") as stderr:
        job = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        while job.poll() is None:
            if memory is not None:
                sample: dict[str, int] = {}
                for pid in descendants(job.pid):
                    sample[kind_of(pid)] = sample.get(kind_of(pid), 0) + rss_bytes(pid)
                memory.append((time.monotonic() - started, sample))
            time.sleep(1)
        stderr.seek(0)
        log = stderr.read()
    if job.returncode != 0:
        raise SystemExit(f"consumer failed:\n{log[-3000:]}")
    return started_at, time.monotonic() - started, log


def memory_report(samples: list, warm_after: float) -> dict:
    """RSS in MiB of the JVM and the Python driver: when the first batch had landed (``warm_after``
    seconds into the run: JIT, caches and the first batch's buffers are in place), at the end, the
    peak, and the growth from the first to the end (flat is near 0)."""
    report = {}
    for kind in ("spark jvm", "python driver"):
        series = [s.get(kind, 0) / 2**20 for at, s in samples if s.get(kind) and at >= warm_after]
        if len(series) < 3:
            continue
        warm, end = series[0], series[-2]  # the last sample may catch the exit
        report[kind] = {"rss_mib_after_warmup": round(warm), "rss_mib_end": round(end),
                        "rss_mib_peak": round(max(series)), "growth_after_warmup": round(end / warm - 1, 3),
                        "samples": len(series)}
    return report


def _ended(report: dict) -> float:
    begun = datetime.fromisoformat(report["timestamp"].replace("Z", "+00:00")).timestamp()
    return begun + report["durationMs"]["triggerExecution"] / 1000


def steady_rate(progress: dict) -> tuple[float, int, float]:
    """(rows/s into both sinks after each query's warm-up, batches per query, when the warm-up
    ended: the later query's first full batch, as a time stamp).

    A query's reports may come from two runs (a report names its ``runId``): the job's small
    first batch (``FIRST_BATCH_OFFSETS``), then the query that goes on with full batches. The
    warm-up left out is everything before the last run's first full batch ends: that batch runs
    the JIT's cold code, as the job's single first batch did before the small one existed."""
    first_end, last_end, rows = 0.0, 0.0, []
    batches = 0
    for reports in progress.values():
        batches = max(batches, sum(1 for r in reports if r["numInputRows"] > 0))
        last_run = reports[-1]["runId"] if reports else None
        with_data = [r for r in reports if r["numInputRows"] > 0 and r.get("runId") == last_run]
        if len(with_data) < 2:
            return 0.0, batches, max(first_end, _ended(with_data[0]) if with_data else 0.0)
        first_end = max(first_end, _ended(with_data[0]))
        last_end = max(last_end, _ended(with_data[-1]))
        rows.append(sum(r["numInputRows"] for r in with_data[1:]))
    return min(rows) / max(last_end - first_end, 1e-3), batches, first_end


def first_batch_seconds(progress: dict, started_at: float) -> dict[str, float]:
    """Per query: seconds from the process start to the end of its first micro-batch with data."""
    firsts = {}
    for name, reports in progress.items():
        with_data = [r for r in reports if r["numInputRows"] > 0]
        if not with_data:
            raise SystemExit(f"query {name} reported no micro-batch with data")
        firsts[name] = round(_ended(with_data[0]) - started_at, 2)
    return firsts


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    """A new database owned by the pipeline's role (created as the set-up's superuser)."""
    with connect(server.admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" OWNER stockpulse')
    url = server.url_for(name)
    apply_init_sql(url)
    return url


def count_rows(url: str) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0]


def count_lake_rows(lake: Path) -> int:
    """Rows a plain Parquet reader sees (pyarrow lists directories, not Spark's commit log)."""
    import pyarrow.dataset as ds

    return ds.dataset(str(lake), format="parquet", partitioning="hive", ignore_prefixes=["_", "."]).count_rows()


def check_counts(run: dict) -> None:
    """Stop loudly when either sink holds other than what was produced."""
    if run["rows_in_postgres"] != run["rows"] or run["rows_in_lake"] != run["rows"]:
        raise SystemExit(f"end to end ({run['source']}, {run['layout']}): produced {run['rows']} rows, but "
                         f"PostgreSQL holds {run['rows_in_postgres']} and the lake {run['rows_in_lake']}")


def end_to_end(server, bootstrap, topic, sent: dict, source: str, layout, batch_rows, work, label: str = "",
               **extra: str) -> dict:
    """``consumer.py --once`` over ``topic``; ``extra`` settings (``SPARK_MASTER``) and a ``label``
    to tell runs apart."""
    name = f"{label}{source}_{layout.replace(',', '_')}"
    url = fresh_database(server, f"bench_{name}")
    env = job_env(bootstrap, topic, url, work / name, SOURCES[source][0], LAKE_PARTITION_BY=layout,
                  MAX_OFFSETS_PER_TRIGGER=str(batch_rows), **extra)
    progress_file = work / f"progress-{name}.json"
    memory: list = []
    started_at, seconds, log = run_once(env, progress_file, memory)
    check_source(log, source)
    writer = postgres_writer(log)
    if extra.get("POSTGRES_WRITER", writer) != writer:
        raise SystemExit(f"the run asked for POSTGRES_WRITER={extra['POSTGRES_WRITER']} but wrote with {writer}")
    progress = json.loads(progress_file.read_text())
    steady, batches, warm_end = steady_rate(progress)
    firsts = first_batch_seconds(progress, started_at)
    warmed_up_after = max(warm_end - started_at, *firsts.values())
    rows, rows_per_tick = sent["rows"], sent["rows"] / sent["ticks"]
    files = sum(1 for _ in (work / name / "lake").rglob("*.parquet"))
    run = {"source": source, "kafka_source_env": SOURCES[source][0] or "(default)", "postgres_writer": writer,
           "class_archive": class_archive(log), "layout": layout,
           "ticks": sent["ticks"], "rows": rows, "rows_in_postgres": count_rows(url),
           "rows_in_lake": count_lake_rows(work / name / "lake"), "parquet_files": files,
           "batch_rows": batch_rows, "batches_per_query": batches,
           "first_batch_rows": int(env.get("FIRST_BATCH_OFFSETS", DEFAULT_FIRST_BATCH_OFFSETS)),
           "startup_s": max(firsts.values()), "first_batch_end_s": firsts,
           "steady_from_s": round(warmed_up_after, 2),
           "seconds_wall": round(seconds, 2), "rows_per_s_wall": round(rows / seconds),
           "rows_per_s_steady": round(steady), "ticks_per_s_steady": round(steady / rows_per_tick),
           "memory": memory_report(memory, warmed_up_after)}
    check_counts(run)
    logger.info("%s source, %d rows: %d rows/s steady, %d rows/s whole run, first data in both sinks after %.1f s",
                source, rows, run["rows_per_s_steady"], run["rows_per_s_wall"], run["startup_s"])
    return run


def wait_for_rows(url: str, rows: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count_rows(url) < rows and time.monotonic() < deadline:
        time.sleep(0.5)


ROWS_PER_TICK = 3.46
"""Messages per tick in a looped replay of ``data/indexProcessed.csv`` (60,000 ticks gave 207,343
messages; the file alone averages 3.56), for sizing the 1M-message run."""
LATENCY_START, LATENCY_ROWS_PER_TICK = date(2000, 1, 3), 4.6
"""The latency run replays from 2000 on, where a tick is ~4.6 messages, so a steady tick pace
is a steady message rate (the 1960s hold one or two indices a day)."""


LATENCY_PERCENTILES = ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.95) WITHIN GROUP "
                       "(ORDER BY l), percentile_cont(0.99) WITHIN GROUP (ORDER BY l), max(l), count(*) FROM "
                       "(SELECT extract(epoch FROM landed_at - kafka_timestamp) AS l FROM ticks_raw "
                       "WHERE kafka_timestamp >= to_timestamp(%s)) s")


def latency(server, bootstrap, work, seconds: float, rate: float, trigger: str, lake_trigger: str,
            warm_seconds: float) -> dict:
    """Kafka timestamp to PostgreSQL commit per row while the producer sends ``rate`` messages/s.

    The pace runs ``warm_seconds`` before the measured ``seconds``: the target is the steady
    state, and the job's first batches after one warm-up tick still run cold code (JIT, batches
    of a size it has not seen). The percentiles over every paced row are kept beside them."""
    topic, pace = "bench_latency", rate / LATENCY_ROWS_PER_TICK
    ensure_topic(bootstrap, topic, PARTITIONS)
    url = fresh_database(server, "bench_latency")
    env = job_env(bootstrap, topic, url, work / "latency", SOURCES["official"][0],
                  LAKE_PARTITION_BY="index", TRIGGER_INTERVAL=trigger, LAKE_TRIGGER_INTERVAL=lake_trigger)
    log_file = work / "latency-consumer.log"
    log = log_file.open("wb")
    consumer = subprocess.Popen([sys.executable, str(ROOT / "consumer" / "consumer.py")], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        warm = produce(bootstrap, topic, 1, 0)  # warm-up tick: wait until the job has landed it
        wait_for_rows(url, warm["rows"], 300)
        paced_from = time.time()
        sent = produce(bootstrap, topic, int((warm_seconds + seconds) * pace), interval=1 / pace,
                       start_date=LATENCY_START)
        wait_for_rows(url, warm["rows"] + sent["rows"], 120)
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(60)
        log.close()
    check_source(log_file.read_text(errors="replace"), "official")
    with connect(url) as conn:
        p50, p95, p99, worst, n = conn.execute(LATENCY_PERCENTILES, (paced_from + warm_seconds,)).fetchone()
        _, _, whole_p99, whole_max, paced = conn.execute(LATENCY_PERCENTILES, (paced_from,)).fetchone()
        total = count_rows(url)
    if not n:
        raise SystemExit(f"latency: no row was sent after the {warm_seconds:.0f}-second warm-up")
    if paced != sent["rows"] or total != warm["rows"] + sent["rows"]:
        raise SystemExit(f"latency: sent {sent['rows']} paced rows, but PostgreSQL holds {paced} (all: {total})")
    return {"source": "official", "rows": n, "warm_up_s": warm_seconds, "messages_per_s_asked": rate,
            "messages_per_s_sent": round(sent["rows"] / sent["seconds"]),  # the final flush included: a floor
            "trigger": trigger, "lake_trigger": lake_trigger,
            "p50_s": round(float(p50), 3), "p95_s": round(float(p95), 3), "p99_s": round(float(p99), 3),
            "max_s": round(float(worst), 3),
            "with_warm_up": {"rows": paced, "p99_s": round(float(whole_p99), 3), "max_s": round(float(whole_max), 3)}}


def add_ceiling_shares(results: dict) -> None:
    """Every rate as a share of this run's confluent-kafka consume ceiling."""
    ceiling = results["consume_ceiling"][0]["rows_per_s"]
    for name in ("producer", "producer_confluent"):
        results[name]["share_of_consume_ceiling"] = round(results[name]["rows_per_s"] / ceiling, 3)
    for reader in results["consume_ceiling"][1:]:
        reader["share_of_consume_ceiling"] = round(reader["rows_per_s"] / ceiling, 3)
    for run in results["end_to_end"]:
        run["steady_share_of_consume_ceiling"] = round(run["rows_per_s_steady"] / ceiling, 3)
        run["wall_share_of_consume_ceiling"] = round(run["rows_per_s_wall"] / ceiling, 4)


@contextmanager
def private_services(prefix: str):
    """``(work, server, broker)``: a temporary directory with an embedded PostgreSQL and Kafka node
    on free ports, both started; stopped and the directory removed on the way out, so a running
    ``make up`` is never touched."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)
    server = EmbeddedPostgres(work / "pg", free_port(), work / "pg.log", work / "secrets" / "pgpass", database="postgres")
    broker = EmbeddedKafka(work / "kafka", free_port(), free_port(), work / "kafka.log", work / "kafka.pid")
    try:
        server.start()
        broker.start()
        yield work, server, broker
    finally:
        broker.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def write_results(results: dict, prefix: str = "") -> str:
    """Keep ``results`` as ``bench/results/<prefix><start time>.json`` and ``<prefix>latest.json``."""
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (out_dir / f"{prefix}{results['started'].replace(':', '')}.json").write_text(text + "\n")
    (out_dir / f"{prefix}latest.json").write_text(text + "\n")
    return text


def versions() -> dict:
    import confluent_kafka
    import kafka
    import pyspark

    return {"pyspark": pyspark.__version__, "kafka_broker": pinned_version(KAFKA_BROKER, "kafka_2.13"),
            "kafka_python": kafka.__version__, "confluent_kafka": confluent_kafka.__version__}


def throughput(args, server, bootstrap: str, work: Path, results: dict) -> None:
    """Producer, consume ceiling and end-to-end runs (small and large) into ``results``."""
    ensure_topic(bootstrap, "bench_big", PARTITIONS)
    logger.info("producing %d ticks", args.ticks)
    results["producer"] = produce(bootstrap, "bench_big", args.ticks)
    rows = results["producer"]["rows"]
    ensure_topic(bootstrap, "bench_confluent", PARTITIONS)  # the faster client, an explicit option
    results["producer_confluent"] = produce(bootstrap, "bench_confluent", args.ticks, client="confluent")
    results["end_to_end"] = []
    large = None
    if args.large_messages:
        ensure_topic(bootstrap, "bench_large", PARTITIONS)
        large_ticks = round(args.large_messages / ROWS_PER_TICK)
        logger.info("producing %d ticks (~%d messages)", large_ticks, args.large_messages)
        large = produce(bootstrap, "bench_large", large_ticks)
        results["producer_large"] = large
    # A first job on this machine writes the JVM class archive as it exits; every later job maps
    # it. The measured runs are later jobs, as a user's are after their first.
    results["warm_up"] = end_to_end(server, bootstrap, "bench_big", results["producer"], "official", "index",
                                    args.batch_rows, work, "warm_up_")
    ceiling_topic, ceiling_rows = ("bench_large", large["rows"]) if large else ("bench_big", rows)
    results["consume_ceiling"] = [consume_confluent(bootstrap, ceiling_topic, ceiling_rows),
                                  consume_kafka_python(bootstrap, ceiling_topic, ceiling_rows)]
    if large:
        logger.info("end to end, official source, %d rows", large["rows"])
        results["end_to_end"].append(end_to_end(server, bootstrap, "bench_large", large, "official", "index",
                                                args.batch_rows, work, "large_"))
    for source in SOURCES:
        logger.info("end to end, %s source, layout index (%d rows)", source, rows)
        results["end_to_end"].append(end_to_end(server, bootstrap, "bench_big", results["producer"], source,
                                                "index", args.batch_rows, work))
    logger.info("end to end, official source, layout index, without the JVM class archive (%d rows)", rows)
    results["end_to_end"].append(end_to_end(server, bootstrap, "bench_big", results["producer"], "official",
                                            "index", args.batch_rows, work, "no_class_archive_",
                                            JVM_CLASS_ARCHIVE="false"))
    # The writers are compared on the large topic when there is one: the small run's two steady
    # batches are within the machine's noise of each other.
    writer_topic, writer_sent = ("bench_large", large) if large else ("bench_big", results["producer"])
    logger.info("end to end, official source, layout index, PostgreSQL written from the driver (%d rows)",
                writer_sent["rows"])
    results["end_to_end"].append(end_to_end(server, bootstrap, writer_topic, writer_sent, "official",
                                            "index", args.batch_rows, work, "driver_writer_",
                                            POSTGRES_WRITER="python"))
    if args.daily_ticks:
        ensure_topic(bootstrap, "bench_daily", PARTITIONS)
        daily = produce(bootstrap, "bench_daily", args.daily_ticks)
        logger.info("end to end, official source, layout index,date (%d rows)", daily["rows"])
        results["end_to_end"].append(end_to_end(server, bootstrap, "bench_daily", daily, "official",
                                                "index,date", max(daily["rows"] // 4, 1), work))
    add_ceiling_shares(results)


def main() -> int:
    logs.configure()
    parser = argparse.ArgumentParser(description="StockPulse pipeline benchmark")
    parser.add_argument("--ticks", type=int, default=60_000, help="ticks of the small runs (~3.46 messages each)")
    parser.add_argument("--large-messages", type=int, default=1_000_000,
                        help="messages of the large runs (0: skip them)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="maxOffsetsPerTrigger of the runs")
    parser.add_argument("--latency-seconds", type=float, default=40)
    parser.add_argument("--latency-rate", type=float, default=2_000, help="messages/s sent during the latency run")
    parser.add_argument("--latency-trigger", default="500 milliseconds", help="TRIGGER_INTERVAL of the latency run")
    parser.add_argument("--latency-warm-up", type=float, default=15,
                        help="seconds of the same pace before the measured ones (left out of the percentiles)")
    parser.add_argument("--latency-lake-trigger", default="10 seconds",
                        help="LAKE_TRIGGER_INTERVAL of the latency run (the lake off the latency path)")
    parser.add_argument("--only-latency", action="store_true", help="measure latency only (quick experiments)")
    parser.add_argument("--daily-ticks", type=int, default=0,
                        help="ticks for an extra index/date run, official source (0: skip; one file per row, slow)")
    args = parser.parse_args()

    begun = time.monotonic()
    started = datetime.now(timezone.utc)
    results: dict = {"started": started.isoformat(timespec="seconds"), "date": started.date().isoformat(),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "versions": versions()}
    with private_services("stockpulse-bench-") as (work, server, broker):
        if not args.only_latency:
            throughput(args, server, broker.bootstrap, work, results)
        logger.info("latency at %.0f messages/s for %.0f s", args.latency_rate, args.latency_seconds)
        results["latency"] = latency(server, broker.bootstrap, work, args.latency_seconds, args.latency_rate,
                                     args.latency_trigger, args.latency_lake_trigger, args.latency_warm_up)
        results["seconds_total"] = round(time.monotonic() - begun, 1)

    print(write_results(results, "latency-" if args.only_latency else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
