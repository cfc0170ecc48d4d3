"""The Spark Structured Streaming job: Kafka -> ticks -> Parquet lake and PostgreSQL.

Two queries read the topic independently, each with its own checkpoint, so either sink can be
rebuilt alone: ``chk/parquet`` (Spark's file sink is exactly-once through its own commit log)
and ``chk/postgres`` (idempotent keyed inserts, see :mod:`stockpulse.sinks.postgres`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from stockpulse.config import ConsumerSettings, KafkaSettings, PostgresSettings, child, redact_url

logger = logging.getLogger(__name__)

BUILTIN_KAFKA_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"


@dataclass(frozen=True)
class JobSettings:
    consumer: ConsumerSettings
    kafka: KafkaSettings
    postgres: PostgresSettings

    @classmethod
    def from_env(cls) -> "JobSettings":
        return cls(ConsumerSettings.from_env(), KafkaSettings.from_env(), PostgresSettings.from_env())


def build_session(settings: ConsumerSettings, master: str | None = None):
    """A SparkSession for the job; under spark-submit its --master wins over SPARK_MASTER."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    # Workers must run this interpreter (the venv's), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("stockpulse-consumer")
    if master or not SparkConf().contains("spark.master"):
        builder = builder.master(master or settings.master)
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def builtin_kafka_available(spark) -> bool:
    """True when the official spark-sql-kafka connector is on the classpath."""
    try:
        spark._jvm.java.lang.Class.forName(BUILTIN_KAFKA_CLASS)
        return True
    except Exception:  # py4j raises a generic Py4JJavaError for ClassNotFoundException
        return False


def use_official_source(wanted: str, on_classpath: bool, embedded_broker: bool) -> bool:
    """Whether to read with ``format("kafka")``: ``builtin`` insists, ``python`` refuses, and
    ``auto`` takes it when the jar is there, except against the embedded tansu broker, whose
    ListOffsets(LATEST) answers are too low (FINDINGS trap 1): the official source sizes every
    batch from them and would fall ever further behind, where the project's reader uses the
    fetch-derived high watermark."""
    if wanted == "python":
        return False
    if wanted == "builtin":
        return True
    return on_classpath and not embedded_broker


def kafka_records(spark, job: JobSettings, query_name: str):
    """A streaming DataFrame of Kafka records from the official source or the project's reader."""
    from stockpulse.errors import ConfigError

    wanted = job.consumer.kafka_source
    builtin = builtin_kafka_available(spark)
    if wanted == "builtin" and not builtin:
        raise ConfigError(
            "KAFKA_SOURCE=builtin but the spark-sql-kafka jar is not on the classpath: run spark-submit "
            "with --packages org.apache.spark:spark-sql-kafka-0-10_2.13:<spark version>, or use KAFKA_SOURCE=auto"
        )
    use_builtin = use_official_source(wanted, builtin, job.kafka.embedded)
    if builtin and not use_builtin and wanted == "auto":
        logger.info("the spark-sql-kafka jar is on the classpath, but the embedded tansu broker under-reports "
                    "its latest offsets to it; using the project's reader (KAFKA_SOURCE=builtin forces the jar)")
    if use_builtin:
        source = "kafka"
    else:
        from stockpulse.kafka_source import SOURCE_NAME, KafkaDataSource

        spark.dataSource.register(KafkaDataSource)
        source = SOURCE_NAME
    logger.info("%s reads %s from %s with the %s Kafka source", query_name, job.kafka.topic,
                job.kafka.bootstrap_servers, "official" if use_builtin else "project's Python")
    reader = (
        spark.readStream.format(source)
        .option("kafka.bootstrap.servers", job.kafka.bootstrap_servers)
        .option("subscribe", job.kafka.topic)
        .option("startingOffsets", job.consumer.starting_offsets)
        .option("failOnDataLoss", str(job.consumer.fail_on_data_loss).lower())
    )
    if job.consumer.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(job.consumer.max_offsets_per_trigger))
    return reader.load()


def start_queries(spark, job: JobSettings, once: bool):
    """Start the Parquet and PostgreSQL queries; returns them (the caller waits on them)."""
    from stockpulse.sinks.postgres import PostgresSink
    from stockpulse.transform import to_ticks, valid_ticks

    settings = job.consumer
    trigger = {"availableNow": True} if once else {"processingTime": settings.trigger_interval}

    parquet_ticks = valid_ticks(to_ticks(kafka_records(spark, job, "parquet")))
    writer = (
        parquet_ticks.writeStream.queryName("ticks_to_parquet").format("parquet")
        .option("path", settings.lake_path)
        .option("checkpointLocation", child(settings.checkpoint_dir, "parquet"))
        .outputMode("append")
        .trigger(**trigger)
    )
    if settings.partition_by:
        writer = writer.partitionBy(*settings.partition_by)
    parquet_query = writer.start()

    sink = PostgresSink(job.postgres.url)
    postgres_query = (
        to_ticks(kafka_records(spark, job, "postgres")).writeStream.queryName("ticks_to_postgres")
        .foreachBatch(sink)
        .option("checkpointLocation", child(settings.checkpoint_dir, "postgres"))
        .trigger(**trigger)
        .start()
    )
    logger.info(
        "streaming %s -> %s (partitioned by %s) and %s; checkpoints in %s; %s",
        job.kafka.topic, settings.lake_path, ",".join(settings.partition_by) or "nothing",
        redact_url(job.postgres.url), settings.checkpoint_dir,
        "processing what is available, then exiting" if once else f"trigger every {settings.trigger_interval}",
    )
    return [parquet_query, postgres_query]


def wait_for(queries) -> None:
    """Block until every query ends; if one fails, stop the others and re-raise its error."""
    import time

    while True:
        active = [q for q in queries if q.isActive]
        for q in queries:
            error = q.exception()
            if error is not None:
                for other in active:
                    other.stop()
                raise error
        if not active:
            return
        time.sleep(0.5)
