"""Measure the spine: producer rate, the broker's raw consume ceiling, end-to-end rows/s, latency.

Usage: python bench/bench_pipeline.py [--ticks 60000] [--daily-ticks 4000] [--latency-seconds 40]

Everything runs on private services (free ports, temporary directories), so a running
``make up`` is untouched. Results go to ``bench/results/<UTC time>.json`` and
``bench/results/latest.json``. Figures from one run are comparable with each other (same machine,
same moment); compare ratios, not absolute numbers, across machines or runs.

What is measured:
- producer: kafka-python, acks=all, rows/s and ticks/s (a tick is one trading date: ~3.5 rows)
  for the whole replay;
- consume ceiling: one confluent-kafka consumer reading the same topic start to end, and the
  same with kafka-python;
- end to end: ``consumer.py --once`` (both sinks) per lake layout, micro-batches capped at
  ``--batch-rows``. ``rows_per_s_wall`` divides by the whole run, JVM and Spark start-up
  included; ``rows_per_s_steady`` leaves out the first micro-batch of each query (it pays for
  starting Python workers, once per job) and divides the remaining rows by the time from the end
  of the first batch to the end of the last one, the later of the two queries deciding: the rate
  a long-running job sustains into both sinks (also as ticks/s); both sinks' row counts are
  reported so a fast but lossy run cannot pass unnoticed;
- latency: a streaming consumer (1 s trigger) while the producer sends ticks at a steady pace;
  per row ``landed_at - kafka_timestamp`` (Kafka send time to Postgres commit), p50/p95/max.
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
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stockpulse import logs  # noqa: E402
from stockpulse.db import apply_init_sql, connect  # noqa: E402
from stockpulse.producer import make_producer, replay  # noqa: E402
from stockpulse.services.broker import ensure_topic, start_broker, stop_broker  # noqa: E402
from stockpulse.services.postgres import EmbeddedPostgres  # noqa: E402
from stockpulse.services.processes import free_port  # noqa: E402

logger = logging.getLogger("bench")
CSV = ROOT / "data" / "indexProcessed.csv"


def produce(bootstrap: str, topic: str, ticks: int, interval: float = 0.0) -> dict:
    producer = make_producer(bootstrap)
    try:
        stats = replay(CSV, topic, producer, tick_interval=interval, limit=ticks, loop=True)
    finally:
        producer.close()
    return {"ticks": stats.ticks, "rows": stats.rows, "seconds": round(stats.seconds, 3),
            "rows_per_s": round(stats.rows / stats.seconds), "ticks_per_s": round(stats.ticks / stats.seconds)}


def consume_confluent(bootstrap: str, topic: str, expected: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                         "fetch.max.bytes": 16 << 20, "max.partition.fetch.bytes": 8 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen, started = 0, time.monotonic()
    while seen < expected and time.monotonic() - started < 300:
        seen += sum(1 for m in consumer.consume(10_000, timeout=1) if m.error() is None)
    seconds = time.monotonic() - started
    consumer.close()
    return {"client": "confluent-kafka", "rows": seen, "seconds": round(seconds, 3), "rows_per_s": round(seen / seconds)}


def consume_kafka_python(bootstrap: str, topic: str, expected: int) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, 0)
    seen, started = 0, time.monotonic()
    while seen < expected and time.monotonic() - started < 300:
        seen += sum(len(v) for v in consumer.poll(timeout_ms=1000, max_records=50_000).values())
    seconds = time.monotonic() - started
    consumer.close()
    return {"client": "kafka-python", "rows": seen, "seconds": round(seconds, 3), "rows_per_s": round(seen / seconds)}


def job_env(bootstrap: str, topic: str, url: str, work: Path, **extra: str) -> dict:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic, "DATABASE_URL": url,
            "LAKE_PATH": str(work / "lake"), "CHECKPOINT_DIR": str(work / "chk"), "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": str(ROOT), **extra}


def run_once(env: dict, progress_file: Path | None = None) -> float:
    started = time.monotonic()
    command = [sys.executable, str(ROOT / "consumer" / "consumer.py"), "--once"]
    if progress_file:
        command += ["--progress-file", str(progress_file)]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"consumer failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def _ended(report: dict) -> float:
    begun = datetime.fromisoformat(report["timestamp"].replace("Z", "+00:00")).timestamp()
    return begun + report["durationMs"]["triggerExecution"] / 1000


def steady_rate(progress: dict) -> tuple[float, int]:
    """(rows/s into both sinks after each query's first batch, batches per query)."""
    first_end, last_end, rows = 0.0, 0.0, []
    batches = 0
    for reports in progress.values():
        with_data = [r for r in reports if r["numInputRows"] > 0]
        batches = max(batches, len(with_data))
        if len(with_data) < 2:
            return 0.0, batches
        first_end = max(first_end, _ended(with_data[0]))
        last_end = max(last_end, _ended(with_data[-1]))
        rows.append(sum(r["numInputRows"] for r in with_data[1:]))
    return min(rows) / max(last_end - first_end, 1e-3), batches


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    with connect(f"postgresql://stockpulse@{server.host}:{server.port}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://stockpulse@{server.host}:{server.port}/{name}"
    apply_init_sql(url)
    return url


def count_rows(url: str) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0]


def count_lake_rows(lake: Path) -> int:
    """Rows a plain Parquet reader sees (pyarrow lists directories, not Spark's commit log)."""
    import pyarrow.dataset as ds

    return ds.dataset(str(lake), format="parquet", partitioning="hive", ignore_prefixes=["_", "."]).count_rows()


def end_to_end(server, bootstrap, topic, sent: dict, layout, batch_rows, work) -> dict:
    name = layout.replace(",", "_")
    url = fresh_database(server, f"bench_{name}")
    env = job_env(bootstrap, topic, url, work / name, LAKE_PARTITION_BY=layout,
                  MAX_OFFSETS_PER_TRIGGER=str(batch_rows))
    progress_file = work / f"progress-{name}.json"
    seconds = run_once(env, progress_file)
    steady, batches = steady_rate(json.loads(progress_file.read_text()))
    rows, rows_per_tick = sent["rows"], sent["rows"] / sent["ticks"]
    files = sum(1 for _ in (work / name / "lake").rglob("*.parquet"))
    return {"layout": layout, "ticks": sent["ticks"], "rows": rows, "rows_in_postgres": count_rows(url),
            "rows_in_lake": count_lake_rows(work / name / "lake"), "parquet_files": files,
            "batch_rows": batch_rows, "batches_per_query": batches,
            "seconds_wall": round(seconds, 2), "rows_per_s_wall": round(rows / seconds),
            "rows_per_s_steady": round(steady), "ticks_per_s_steady": round(steady / rows_per_tick)}


def latency(server, bootstrap, work, seconds: float) -> dict:
    topic = "bench_latency"
    ensure_topic(bootstrap, topic, 3)
    url = fresh_database(server, "bench_latency")
    env = job_env(bootstrap, topic, url, work / "latency", LAKE_PARTITION_BY="index", TRIGGER_INTERVAL="1 second")
    log = (work / "latency-consumer.log").open("wb")
    consumer = subprocess.Popen([sys.executable, str(ROOT / "consumer" / "consumer.py")], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        produce(bootstrap, topic, 1, 0)  # warm-up tick: wait until the job has landed it
        deadline = time.monotonic() + 300
        while count_rows(url) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        sent = produce(bootstrap, topic, int(seconds * 20), interval=0.05)
        deadline = time.monotonic() + 120
        while count_rows(url) < sent["rows"] + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(60)
        log.close()
    with connect(url) as conn:
        p50, p95, worst, n = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.95) WITHIN GROUP (ORDER BY l),"
            " max(l), count(*) FROM (SELECT extract(epoch FROM landed_at - kafka_timestamp) AS l FROM ticks_raw"
            " ORDER BY kafka_timestamp OFFSET 1) s").fetchone()
    return {"rows": n, "ticks_per_s_sent": 20, "trigger": "1 second",
            "p50_s": round(float(p50), 3), "p95_s": round(float(p95), 3), "max_s": round(float(worst), 3)}


def main() -> int:
    logs.configure()
    parser = argparse.ArgumentParser(description="StockPulse pipeline benchmark")
    parser.add_argument("--ticks", type=int, default=60_000, help="ticks for the index-partitioned run")
    parser.add_argument("--daily-ticks", type=int, default=4_000, help="ticks for the index/date run (one file per row)")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="maxOffsetsPerTrigger of the runs")
    parser.add_argument("--latency-seconds", type=float, default=40)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stockpulse-bench-"))
    os.chmod(work, 0o755)
    server = EmbeddedPostgres(work / "pg", free_port(), work / "pg.log", database="postgres")
    bootstrap = f"127.0.0.1:{free_port()}"
    results: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    try:
        server.start()
        start_broker("127.0.0.1", int(bootstrap.rsplit(":", 1)[1]), work)
        for topic in ("bench_big", "bench_daily", "bench_empty"):
            ensure_topic(bootstrap, topic, 3)

        logger.info("producing %d ticks", args.ticks)
        results["producer"] = produce(bootstrap, "bench_big", args.ticks)
        rows = results["producer"]["rows"]
        results["consume_ceiling"] = [consume_confluent(bootstrap, "bench_big", rows),
                                      consume_kafka_python(bootstrap, "bench_big", rows)]

        logger.info("measuring start-up on an empty topic")
        startup = run_once(job_env(bootstrap, "bench_empty", fresh_database(server, "bench_empty"), work / "empty"))
        results["consumer_startup_s"] = round(startup, 2)

        logger.info("end to end, layout index (%d rows)", rows)
        results["end_to_end"] = [end_to_end(server, bootstrap, "bench_big", results["producer"], "index",
                                            args.batch_rows, work)]
        daily = produce(bootstrap, "bench_daily", args.daily_ticks)
        logger.info("end to end, layout index,date (%d rows)", daily["rows"])
        results["end_to_end"].append(end_to_end(server, bootstrap, "bench_daily", daily, "index,date",
                                                max(daily["rows"] // 4, 1), work))

        ceiling = results["consume_ceiling"][0]["rows_per_s"]
        for run in results["end_to_end"]:
            run["steady_share_of_consume_ceiling"] = round(run["rows_per_s_steady"] / ceiling, 3)

        logger.info("latency at a steady pace for %.0f s", args.latency_seconds)
        results["latency"] = latency(server, bootstrap, work, args.latency_seconds)
    finally:
        stop_broker(work)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (out_dir / f"{results['started'].replace(':', '')}.json").write_text(text + "\n")
    (out_dir / "latest.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
