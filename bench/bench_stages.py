"""Take the streaming job's per-message work apart: each stage as a batch job over one topic.

Usage: python bench/bench_stages.py [--ticks 30000] [--repeats 3]

End-to-end runs say how fast the job is; this says where the time goes, in seconds per stage of
the same records, without the streaming machinery (triggers, offsets, checkpoints) around them.
Each row adds one stage to a plain batch read of the topic (``spark.read.format("kafka")``):
read; parse and check (``to_ticks``); write the valid ticks to Parquet; build the CSV lines of the
JVM PostgreSQL writer; COPY them. Then the same sinks again after Spark's floor: the JSON
parsed, cast and enriched with none of our checks (``spark_floor``), so that the gap between
the two rows is what our code costs and the floor is what Spark's own parts cost. It also counts the records per Kafka partition (the key skew)
and times the read alone with ``minPartitions``. Every stage runs ``--repeats`` times; the last
(warm) run is the one to compare. Private services, as in ``bench_pipeline.py``; JSON to
``bench/results/stages-<UTC time>.json``.

A benchmark, not a test: nothing here is asserted against a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import PARTITIONS, fresh_database, private_services, produce, versions  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.db import connect  # noqa: E402
from stockpulse.ops.services.broker import ensure_topic  # noqa: E402

logger = logging.getLogger("bench.stages")


def spark_floor(records):
    """What ``to_ticks`` gives for a valid message, without any of its checks: the JSON parsed,
    prices cast to the stored type, ``trade_value``, the Kafka lineage, and the dead-letter
    columns NULL. The difference between this and ``to_ticks`` is the cost of our checks; what
    this costs is Spark's (its Kafka source, its JSON parser, its decimals), not ours.

    Parsed in a projection of its own, kept apart the way ``to_ticks`` keeps it (a partition id
    column), so the optimizer parses each message once rather than once per field."""
    from pyspark.sql import functions as F

    from stockpulse.schema import PRICE_FIELDS, REASON_COLUMN, TICK_FIELDS, TRADE_VALUE, spark_tick_schema

    stored = {f.name: f for f in TICK_FIELDS}
    none = F.lit(None).cast("string")
    parsed = records.select(
        F.from_json(F.col("value").cast("string"), spark_tick_schema()).alias("t"), "topic", "partition", "offset",
        "timestamp", F.spark_partition_id().alias("_parse_barrier"))
    return parsed.select(
        *[(F.col(f"t.{name}").cast(f.spark_type) if name in PRICE_FIELDS else F.col(f"t.{name}")).alias(name)
          for name, f in stored.items()],
        (F.col("t.close").cast(stored["close"].spark_type) * F.col("t.volume").cast("DECIMAL(19,0)"))
        .cast(TRADE_VALUE.spark_type).alias(TRADE_VALUE.name),
        F.col("topic").alias("kafka_topic"), F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"), F.col("timestamp").alias("kafka_timestamp"),
        none.alias("kafka_key"), none.alias("raw_value"), none.alias(REASON_COLUMN))


def timed(repeats: int, action) -> list[float]:
    """Seconds of each of ``repeats`` runs of ``action(run_number)``."""
    seconds = []
    for run in range(repeats):
        started = time.monotonic()
        action(run)
        seconds.append(round(time.monotonic() - started, 2))
    return seconds


def main() -> int:
    logs.configure()
    parser = argparse.ArgumentParser(description="StockPulse: the job's stages, one at a time")
    parser.add_argument("--ticks", type=int, default=30_000, help="ticks to produce (~3.46 messages each)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    results: dict = {"started": started.isoformat(timespec="seconds"), "versions": versions(), "stages": []}
    with private_services("stockpulse-stages-") as (work, server, broker):
        ensure_topic(broker.bootstrap, "stages", PARTITIONS)
        results["producer"] = produce(broker.bootstrap, "stages", args.ticks)
        url = fresh_database(server, "stages")
        os.environ.update(LAKE_PATH=str(work / "lake"), CHECKPOINT_DIR=str(work / "chk"))

        from pyspark.sql import functions as F

        from stockpulse.config import ConsumerSettings
        from stockpulse.schema import spark_tick_schema
        from stockpulse.stream.job import build_session, connector_jars, postgres_writer_jars
        from stockpulse.stream.lake import WRITE_OPTIONS
        from stockpulse.stream.sinks.jvm_copy import JvmCopySink, encoded
        from stockpulse.stream.transform import to_ticks, valid_ticks

        spark = build_session(ConsumerSettings.from_env(), None, [*connector_jars("builtin"),
                                                                  *postgres_writer_jars("jvm")])

        def records(**options):
            reader = (spark.read.format("kafka").option("kafka.bootstrap.servers", broker.bootstrap)
                      .option("subscribe", "stages"))
            for key, value in options.items():
                reader = reader.option(key, value)
            return reader.load()

        raw = records()
        results["messages"] = raw.count()
        results["messages_per_partition"] = {
            str(row["partition"]): row["count"] for row in raw.groupBy("partition").count().collect()}
        ticks = to_ticks(raw)
        parsed = raw.select(F.from_json(F.col("value").cast("string"), spark_tick_schema()).alias("t"))
        unchecked = spark_floor(raw)
        sink = JvmCopySink(url)

        def copy(frame):
            def run_copy(run: int) -> None:
                with connect(url, autocommit=True) as conn:
                    conn.execute("TRUNCATE ticks_raw, ticks_dead_letter")
                sink.write(frame)
            return run_copy

        stages = [
            ("read the records from Kafka", lambda run: raw.select(F.sum(F.length("value"))).collect()),
            ("+ parse and check them (to_ticks)", lambda run: ticks.write.format("noop").mode("overwrite").save()),
            ("+ write the valid ones to Parquet", lambda run: valid_ticks(ticks).write.mode("overwrite")
             .options(**WRITE_OPTIONS).partitionBy("index").parquet(str(work / f"lake-{run}"))),
            ("+ build the CSV lines for COPY instead", lambda run: encoded(ticks).write.format("noop")
             .mode("overwrite").save()),
            ("+ COPY them into PostgreSQL (JVM writer, after a TRUNCATE)", copy(ticks)),
            ("+ parse only (from_json, nothing cast or checked)", lambda run: parsed.write.format("noop")
             .mode("overwrite").save()),
            ("+ parse, cast and enrich, nothing checked (Spark's floor for to_ticks)",
             lambda run: unchecked.write.format("noop").mode("overwrite").save()),
            ("+ write them to Parquet, nothing checked (Spark's floor for the lake query)",
             lambda run: valid_ticks(unchecked).write.mode("overwrite").options(**WRITE_OPTIONS)
             .partitionBy("index").parquet(str(work / f"floor-{run}"))),
            ("+ COPY them, nothing checked (Spark's floor for the PostgreSQL query)", copy(unchecked)),
            ("read the records from Kafka, minPartitions=4",
             lambda run: records(minPartitions="4").select(F.sum(F.length("value"))).collect()),
        ]
        for name, action in stages:
            seconds = timed(args.repeats, action)
            logger.info("%s: %s s", name, seconds)
            results["stages"].append({"stage": name, "seconds": seconds, "warm_seconds": seconds[-1]})
        spark.stop()

    out = ROOT / "bench" / "results" / f"stages-{started.strftime('%Y-%m-%dT%H%M%S%z')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
