"""The Spark Structured Streaming job: Kafka -> ticks -> Parquet lake and PostgreSQL.

Two queries read the topic independently, each with its own checkpoint, so either sink can be
rebuilt alone: ``chk/parquet`` (Spark's file sink is exactly-once through its own commit log)
and ``chk/postgres`` (idempotent keyed inserts, see :mod:`stockpulse.stream.sinks.postgres`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass

from stockpulse.config import (
    PARQUET_SINK, POSTGRES_SINK, SINKS, ConsumerSettings, KafkaSettings, PostgresSettings, StackSettings,
    interval_seconds, query_name, redact_url,
)

logger = logging.getLogger(__name__)

BUILTIN_KAFKA_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"


@dataclass(frozen=True)
class JobSettings:
    consumer: ConsumerSettings
    kafka: KafkaSettings
    postgres: PostgresSettings

    @classmethod
    def of(cls, stack: StackSettings) -> "JobSettings":
        """The job's share of the stack's settings (read once by the entry point)."""
        return cls(stack.consumer, stack.kafka, stack.postgres)


def named_in_conf(conf, marker: str) -> bool:
    """True when spark-submit or spark-defaults.conf already put a jar or package whose name holds
    ``marker`` on the classpath (``--packages``, ``--jars``, an extra class path)."""
    keys = ("spark.jars.packages", "spark.jars", "spark.driver.extraClassPath")
    return marker in ",".join(conf.get(key, "") or "" for key in keys)


def jvm_running(conf) -> bool:
    """True under spark-submit: the JVM already runs, so jars added now would not reach the driver."""
    return conf.contains("spark.app.id") or "PYSPARK_GATEWAY_PORT" in os.environ


def connector_submitted(conf) -> bool:
    """True when spark-submit already put the connector on the classpath (``--packages``/``--jars``)."""
    return named_in_conf(conf, "spark-sql-kafka-0-10")


def connector_jars(wanted: str, conf=None) -> list[str]:
    """The jars to add so ``format("kafka")`` works; empty when none are needed or none can be had.

    ``python`` needs none; under ``spark-submit --packages`` Spark has them already; otherwise the
    project resolves the connector matching pyspark from the Maven registry once and reuses the
    cached jars (:mod:`stockpulse.jars`). A machine that cannot reach the registry falls
    back to the project's reader under ``auto`` and stops with one line under ``builtin``.
    """
    from pyspark import SparkConf

    from stockpulse.errors import ConfigError, ServiceError
    from stockpulse.jars import spark_kafka_jars, spark_kafka_package

    if wanted == "python":
        return []
    conf = conf if conf is not None else SparkConf()
    if connector_submitted(conf):
        return []
    if jvm_running(conf):
        if wanted == "builtin":
            raise ConfigError(f"KAFKA_SOURCE=builtin under spark-submit needs --packages {spark_kafka_package()}")
        logger.warning("spark-submit without --packages %s: reading Kafka with the project's Python reader",
                       spark_kafka_package())
        return []
    try:
        return [str(jar) for jar in spark_kafka_jars()]
    except ServiceError as exc:
        if wanted == "builtin":
            raise ConfigError(f"KAFKA_SOURCE=builtin but the Kafka connector is unavailable: {exc}") from None
        logger.warning("%s; reading Kafka with the project's Python reader instead (KAFKA_SOURCE=python "
                       "says so explicitly)", exc)
        return []


def postgres_writer_jars(wanted: str, conf=None) -> list[str]:
    """The JDBC driver and the project's COPY writer for ``POSTGRES_WRITER`` ``jvm``/``auto``; empty
    when ``python`` is asked for, when spark-submit was given them, or when none can be had (then
    ``auto`` writes from the driver, and :func:`use_jvm_writer` stops ``jvm`` with one line)."""
    from pyspark import SparkConf

    from stockpulse.errors import ServiceError
    from stockpulse.jars import WRITER_JAR, postgres_copy_jars

    if wanted == "python":
        return []
    conf = conf if conf is not None else SparkConf()
    if named_in_conf(conf, WRITER_JAR.removesuffix(".jar")):
        return []
    if jvm_running(conf):
        logger.warning("spark-submit without --jars %s: PostgreSQL is written from the driver ('python -m "
                       "stockpulse.jars --postgres-writer' prints the jars to pass)", WRITER_JAR)
        return []
    try:
        return [str(jar) for jar in postgres_copy_jars()]
    except (ServiceError, OSError) as exc:  # OSError: a read-only or full jar cache
        logger.warning("%s; PostgreSQL is written from the driver instead (POSTGRES_WRITER=python says so "
                       "explicitly)", exc)
        return []


def use_jvm_writer(wanted: str, on_classpath: bool) -> bool:
    """Whether PostgreSQL is written from the executors: ``python`` refuses, ``jvm`` insists, and
    ``auto`` (the default) takes it whenever the writer is on the classpath."""
    from stockpulse.errors import ConfigError

    if wanted == "python":
        return False
    if wanted == "jvm" and not on_classpath:
        raise ConfigError("POSTGRES_WRITER=jvm but the JVM writer is not on the classpath: 'python -m "
                          "stockpulse.jars' says why; under spark-submit pass --jars with what 'python -m "
                          "stockpulse.jars --postgres-writer' prints")
    return on_classpath


def postgres_sink(spark, job: "JobSettings"):
    """The ``foreachBatch`` writer of ``ticks_raw``: COPY from the executors when it can
    (:mod:`stockpulse.stream.sinks.jvm_copy`, several times the driver's rate), else from the
    driver (:mod:`stockpulse.stream.sinks.postgres`)."""
    from stockpulse.errors import ConfigError
    from stockpulse.stream.sinks.jvm_copy import DRIVER_CLASS, WRITER_CLASS, JvmCopySink, jdbc_target
    from stockpulse.stream.sinks.postgres import PostgresSink

    wanted, postgres = job.postgres.writer, job.postgres
    on_classpath = class_loadable(spark, WRITER_CLASS) and class_loadable(spark, DRIVER_CLASS)
    if use_jvm_writer(wanted, on_classpath):
        try:
            target = jdbc_target(postgres.url)
            refuse_loopback_for_remote_executors(target.url, spark.sparkContext.master)
        except ConfigError as exc:
            if wanted == "jvm":
                raise
            logger.warning("%s; PostgreSQL is written from the driver instead", exc)
        else:
            logger.info("PostgreSQL is written from the executors (JDBC COPY to %s)", target.url)
            return JvmCopySink(postgres.url, postgres.retry_seconds, target)
    logger.info("PostgreSQL is written from the driver (psycopg COPY)")
    return PostgresSink(postgres.url, postgres.retry_seconds)


LOOPBACK_JDBC = re.compile(r"^jdbc:postgresql://(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]")


def refuse_loopback_for_remote_executors(url: str, master: str) -> None:
    """Executors on other machines would reach their own loopback, not this machine's database
    (the embedded server listens on 127.0.0.1 only): writing from them is refused there."""
    from stockpulse.errors import ConfigError

    if not on_this_machine(master) and LOOPBACK_JDBC.match(url):
        raise ConfigError(f"the database is on this machine's loopback ({url}), which executors of {master} "
                          "cannot reach: set DATABASE_URL to an address they can, or POSTGRES_WRITER=python")


def s3a_locations(settings: ConsumerSettings) -> list[str]:
    """The job's locations on ``s3a://`` (the lake, the checkpoints): S3A is needed iff any."""
    from stockpulse.config import is_s3a

    return [location for location in (settings.lake_path, settings.checkpoint_dir) if is_s3a(location)]


def s3a_jars(conf) -> list[str]:
    """Hadoop's S3A and the AWS SDK, resolved from the Maven registry once (:mod:`stockpulse.jars`);
    empty when spark-submit was given them, or when it runs the JVM already (then the cluster's
    own classpath must have S3A, as EMR's or Dataproc's has)."""
    from stockpulse.errors import ConfigError, ServiceError
    from stockpulse.jars import hadoop_aws_jars, hadoop_aws_package

    if named_in_conf(conf, "hadoop-aws"):
        return []
    if jvm_running(conf):
        logger.warning("spark-submit without --packages %s: s3a:// works only if the cluster's classpath has "
                       "Hadoop's S3A", hadoop_aws_package())
        return []
    try:
        return [str(jar) for jar in hadoop_aws_jars()]
    except ServiceError as exc:
        raise ConfigError(f"the lake or the checkpoints are on s3a:// but Hadoop's S3A connector is unavailable: "
                          f"{exc}") from None


def with_s3a(builder, conf, settings: ConsumerSettings, local: bool):
    """``builder`` set up for the job's ``s3a://`` locations, and the jars to ship to executors.

    ``spark.hadoop.fs.s3a.*`` come from the AWS variables (:mod:`stockpulse.stream.s3`);
    a value given with ``--conf`` or in spark-defaults.conf wins. On this machine the jars go on
    the driver's and executors' class path where they lie: as ``spark.jars`` Spark would copy the
    650 MB AWS SDK bundle into every job's temporary directory (a ``kill -9`` leaves that copy
    behind). Executors elsewhere get them as ``spark.jars``, the only way there.
    """
    from stockpulse.config import S3Settings, is_s3a
    from stockpulse.stream.s3 import hadoop_conf

    s3 = S3Settings.from_env(os.environ)
    logger.info("%s on S3 (S3A): %s", " and ".join(s3a_locations(settings)), s3.describe())
    if is_s3a(settings.checkpoint_dir):
        logger.warning("CHECKPOINT_DIR=%s: S3 has no atomic rename, which Spark's checkpoint log relies on; a "
                       "job killed while writing one can lose its place. Keep checkpoints on a local or HDFS "
                       "path", settings.checkpoint_dir)
    for key, value in hadoop_conf(s3).items():
        if not conf.contains(key):
            builder = builder.config(key, value)
    jars = s3a_jars(conf)
    if not (jars and local):
        return builder, jars
    for key in ("spark.driver.extraClassPath", "spark.executor.extraClassPath"):
        builder = builder.config(key, extra_class_path(conf, key, jars))
    return builder, []


def extra_class_path(conf, key: str, jars: list[str]) -> str:
    """``key`` (an ``extraClassPath``) as the job sets it: the user's entries, then ``jars``."""
    return os.pathsep.join([*filter(None, [conf.get(key, "")]), *jars])


def effective_master(master: str | None, conf, settings: ConsumerSettings) -> str:
    """The master the job runs on: ``--master``, else spark-submit's, else ``SPARK_MASTER``."""
    return master or conf.get("spark.master", None) or settings.master


LOOPBACK_MASTER = re.compile(r"^spark://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$")


def on_this_machine(master: str) -> bool:
    """A local master, or a standalone master on loopback (``make cluster-up``'s): every executor
    runs here, so the driver need not be reachable from anywhere else."""
    return master.startswith("local") or bool(LOOPBACK_MASTER.match(master))


JIT_OPTIONS = ("-XX:-DontCompileHugeMethods",)
"""HotSpot never JIT-compiles a method over 8,000 bytes of bytecode, and the whole-stage code
Spark generates for the tick projection (parse, enrich, dead-letter reasons) is larger: it ran
interpreted, 2.8x slower (measured, ``docs/performance.md``).

Given as ``spark.{driver,executor}.defaultJavaOptions``, which Spark puts *before* the
``extraJavaOptions``: a user's own JVM options (``--conf``, spark-defaults.conf: JAAS files, GC or
log settings) are kept whole, and a user's ``-XX:+DontCompileHugeMethods`` there still wins."""


def with_java_options(existing: str | None, options=JIT_OPTIONS) -> str:
    """``existing`` JVM options plus ``options``, leaving out a flag ``existing`` already sets
    either way (``-XX:+Name`` or ``-XX:-Name``)."""
    current = (existing or "").split()
    named = {option.lstrip("-X:+").split("=")[0] for option in current if option.startswith("-XX:")}
    return " ".join([*current, *(o for o in options if o.lstrip("-X:+").split("=")[0] not in named)])


def class_archive_plan(settings: ConsumerSettings, master: str | None = None, conf=None):
    """The JVM class archive this start maps or writes (:mod:`stockpulse.stream.class_archive`);
    None when it is switched off (``JVM_CLASS_ARCHIVE=false``) or the JVM is already running
    (spark-submit), whose options this process can no longer set.

    One archive serves every set of ``spark.jars``: those load through Spark's own class loader,
    whose archived classes the JVM takes only when their bytes match (size and CRC). The JVM's own
    class path is in the key: pyspark's jars, ``spark.driver.extraClassPath`` as
    :func:`build_session` will set it (S3A's jars go there on this machine), and what the
    environment adds (``SPARK_CONF_DIR``, ``HADOOP_CONF_DIR``...), so that runs with and without
    it keep an archive each. A non-empty directory there rules the archive out.
    """
    from pyspark import SparkConf

    from stockpulse.jars import cache_root
    from stockpulse.stream import class_archive

    conf = conf if conf is not None else SparkConf()
    if not settings.class_archive or jvm_running(conf):
        return None
    local_s3a = s3a_locations(settings) and on_this_machine(effective_master(master, conf, settings))
    class_path = extra_class_path(conf, "spark.driver.extraClassPath", s3a_jars(conf) if local_s3a else [])
    options = " ".join([with_java_options(conf.get("spark.driver.defaultJavaOptions", None)),
                        conf.get("spark.driver.extraJavaOptions", ""), conf.get("spark.driver.memory", ""), class_path])
    from_env = class_archive.launcher_class_path()
    refused = class_archive.unarchivable(from_env)
    if refused:
        logger.info("no JVM class archive: %s puts the directory %s, which is not empty, on the JVM's class path, "
                    "and the JVM archives no classes with one there", *refused)
        return None
    directory = settings.class_archive_dir or cache_root() / "class-archives"
    present = [entry for _, entry in from_env if entry.exists()]  # an absent entry is nothing to the JVM
    return class_archive.plan(directory, class_archive.java_binary(), [*class_archive.spark_classpath(), *present],
                              options)


def build_session(settings: ConsumerSettings, master: str | None = None, jars: list[str] = (),
                  driver_options: tuple[str, ...] = ()):
    """A SparkSession for the job; under spark-submit its --master wins over SPARK_MASTER.

    ``jars`` go into ``spark.jars`` before the JVM starts, which puts them on the driver's
    classpath and ships them to executors, as ``spark-submit --jars`` would; ``driver_options``
    join the driver JVM's options (the class archive's). A lake or checkpoints
    on ``s3a://`` add Hadoop's S3A and its settings (:func:`with_s3a`).
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    from stockpulse.stream.numpy_converters import defer_numpy_converters

    defer_numpy_converters()  # pandas stays out of the start-up path (numpy_converters.py)
    # Workers must run this interpreter (the venv's), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = SparkConf()
    builder = SparkSession.builder.appName("stockpulse-consumer")
    if master or not conf.contains("spark.master"):
        builder = builder.master(master or settings.master)
    local = on_this_machine(effective_master(master, conf, settings))
    if local:
        # Nothing outside this machine needs the driver: its RPC, block manager and UI (4040)
        # listen on loopback only. SPARK_LOCAL_IP reaches the UI, which ignores bindAddress; a
        # remote master keeps Spark's defaults, since executors elsewhere must reach the driver.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    if s3a_locations(settings):
        builder, shipped = with_s3a(builder, conf, settings, local)
        jars = [*jars, *shipped]
    if jars:
        builder = builder.config("spark.jars", ",".join([*filter(None, [conf.get("spark.jars", "")]), *jars]))
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # The driver's reach the JVM only when this process starts it (python consumer.py); under
        # spark-submit add --conf spark.driver.defaultJavaOptions=-XX:-DontCompileHugeMethods.
        .config("spark.driver.defaultJavaOptions",
                with_java_options(conf.get("spark.driver.defaultJavaOptions", None), (*JIT_OPTIONS, *driver_options)))
        .config("spark.executor.defaultJavaOptions",
                with_java_options(conf.get("spark.executor.defaultJavaOptions", None)))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def class_loadable(spark, name: str) -> bool:
    """True when class ``name`` is on the job's classpath."""
    # Through Spark's own loader: jars from spark.jars / --packages live in the context class
    # loader, which a plain Class.forName from py4j does not consult.
    return bool(spark._jvm.org.apache.spark.util.Utils.classIsLoadable(name))


def builtin_kafka_available(spark) -> bool:
    """True when the official spark-sql-kafka connector is on the classpath."""
    return class_loadable(spark, BUILTIN_KAFKA_CLASS)


def use_official_source(wanted: str, on_classpath: bool) -> bool:
    """Whether to read with ``format("kafka")``: ``python`` refuses, ``builtin`` insists, and
    ``auto`` (the default) takes it whenever the connector is on the classpath."""
    from stockpulse.errors import ConfigError
    from stockpulse.jars import spark_kafka_package

    if wanted == "python":
        return False
    if wanted == "builtin" and not on_classpath:
        raise ConfigError(
            f"KAFKA_SOURCE=builtin but the spark-sql-kafka connector is not on the classpath: run spark-submit "
            f"with --packages {spark_kafka_package()}, or use KAFKA_SOURCE=auto")
    return on_classpath


def kafka_format(spark, job: JobSettings) -> str:
    """The ``readStream`` format the job reads Kafka with: Spark's connector (``kafka``) or the
    project's reader, registered here; decided once per job, and logged once."""
    use_builtin = use_official_source(job.consumer.kafka_source, builtin_kafka_available(spark))
    if use_builtin:
        source = "kafka"
    else:
        from stockpulse.stream.kafka_source import SOURCE_NAME, KafkaDataSource

        spark.dataSource.register(KafkaDataSource)
        source = SOURCE_NAME
    logger.info("the job reads %s from %s with the %s Kafka source", job.kafka.topic, job.kafka.bootstrap_servers,
                "official" if use_builtin else "project's Python")
    return source


def kafka_records(spark, job: JobSettings, source: str, max_offsets: int | None = None):
    """A streaming DataFrame of Kafka records read with ``source`` (:func:`kafka_format`);
    ``max_offsets`` caps each micro-batch (default: ``MAX_OFFSETS_PER_TRIGGER``)."""
    reader = (
        spark.readStream.format(source)
        .option("kafka.bootstrap.servers", job.kafka.bootstrap_servers)
        .option("subscribe", job.kafka.topic)
        .option("startingOffsets", job.consumer.starting_offsets)
        .option("failOnDataLoss", str(job.consumer.fail_on_data_loss).lower())
    )
    if job.consumer.min_partitions and source == "kafka":
        reader = reader.option("minPartitions", str(job.consumer.min_partitions))
    cap = job.consumer.max_offsets_per_trigger if max_offsets is None else max_offsets
    if cap:
        reader = reader.option("maxOffsetsPerTrigger", str(cap))
    return reader.load()


def triggers(settings: ConsumerSettings, once: bool) -> dict[str, dict]:
    """Each sink's trigger: what is available at start (``--once``), else its processing-time interval."""
    return {sink: {"availableNow": True} if once else {"processingTime": settings.trigger_of(sink)}
            for sink in SINKS}


def query_starter(spark, job: JobSettings):
    """A function that starts one sink's query: ``start(sink, trigger, max_offsets=None)``.

    A query per sink, each reading the topic itself: measured against one query feeding both
    sinks (``foreachBatch`` with Spark's file sink by batch id), the rate was the same here
    (``docs/performance.md``), and separate queries keep each sink restartable on its own and
    the lake landing while PostgreSQL is down. The PostgreSQL writer and the Kafka source are
    chosen here, before any query starts: a refused one stops the job whole.

    The tick columns are built once (~2,700 py4j calls, ~1 s of the driver: measured), and
    queries with the same cap start from one ticks DataFrame; Spark gives each query its own
    source instance (with the official source, its own consumer group) and checkpoint all the same.
    """
    from functools import cache

    from stockpulse.stream.lake import WRITE_OPTIONS
    from stockpulse.stream.transform import tick_columns, to_ticks, valid_ticks

    settings = job.consumer
    postgres = postgres_sink(spark, job)
    source = kafka_format(spark, job)

    columns = cache(tick_columns)

    @cache
    def ticks(max_offsets: int | None):
        return to_ticks(kafka_records(spark, job, source, max_offsets), columns())

    def start(sink: str, trigger: dict, max_offsets: int | None = None):
        if sink == POSTGRES_SINK:
            return foreach_batch_query(job, sink, ticks(max_offsets), postgres, trigger)
        writer = (
            valid_ticks(ticks(max_offsets)).writeStream.queryName(query_name(PARQUET_SINK)).format("parquet")
            .option("path", settings.lake_path)
            .options(**WRITE_OPTIONS)
            .option("checkpointLocation", settings.checkpoint(PARQUET_SINK))
            .outputMode("append")
            .trigger(**trigger)
        )
        if settings.partition_by:
            writer = writer.partitionBy(*settings.partition_by)
        return writer.start()

    return start


def foreach_batch_query(job: JobSettings, name: str, ticks, sink, trigger: dict):
    """Start query ``ticks_to_<name>``: every tick record (dead letters included) to ``sink``."""
    return (
        ticks.writeStream.queryName(query_name(name))
        .foreachBatch(sink)
        .option("checkpointLocation", job.consumer.checkpoint(name))
        .trigger(**trigger)
        .start()
    )


def announce(job: JobSettings, how: str, checkpoints: str, trigger: dict) -> None:
    """One line saying where the job streams, from where, and how often."""
    settings = job.consumer
    logger.info(
        "streaming %s -> %s (partitioned by %s) and %s%s; checkpoints in %s; %s",
        job.kafka.topic, settings.lake_path, ",".join(settings.partition_by) or "nothing",
        redact_url(job.postgres.url), how, checkpoints,
        "processing what is available, then exiting" if "availableNow" in trigger
        else f"trigger every {settings.trigger_interval}" + (
            f" (the lake every {settings.lake_trigger})"
            if interval_seconds(settings.lake_trigger) != interval_seconds(settings.trigger_interval) else ""),
    )


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
