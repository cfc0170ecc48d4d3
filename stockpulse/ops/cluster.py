"""``make cluster-up`` / ``make cluster-down`` / ``make cluster-status``: a local cluster to run the
unchanged pipeline on.

Starts a three-node Apache Kafka cluster (KRaft, replication 3, ``min.insync.replicas=2``) with the
topic (``CLUSTER_TOPIC_PARTITIONS``, 6), and a Spark standalone master with two workers. Nothing
in the pipeline knows about this mode: ``cluster-up`` writes ``<state>/cluster/cluster.env`` with
the two settings that point the pipeline at the cluster (``KAFKA_BOOTSTRAP_SERVERS``,
``SPARK_MASTER``), exactly what a user sets for a real cluster.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stockpulse.config import ClusterSettings, StackSettings
from stockpulse.errors import StockPulseError
from stockpulse.ops.services.kafka_cluster import KafkaCluster
from stockpulse.ops.services.spark_cluster import SparkStandalone

logger = logging.getLogger(__name__)


def kafka_cluster(s: StackSettings, c: ClusterSettings) -> KafkaCluster:
    return KafkaCluster(s.paths.cluster / "kafka", c.kafka_base_port, c.topic_partitions)


def spark_cluster(s: StackSettings, c: ClusterSettings) -> SparkStandalone:
    return SparkStandalone(s.paths.cluster / "spark", c.spark_master_port, c.spark_ui_port, c.worker_cores,
                           c.worker_memory)


OWN_OUTPUTS = {"LAKE_PATH": "lake/cluster", "CHECKPOINT_DIR": "chk/cluster"}
"""``cluster.env`` also gives the cluster's job its own lake and checkpoints: checkpoints name the
topic's partitions and offsets on one Kafka, and must never be resumed against another."""


def env_file(s: StackSettings) -> Path:
    return s.paths.cluster / "cluster.env"


def cluster_env(kafka: KafkaCluster, spark: SparkStandalone) -> dict[str, str]:
    """The settings that move the pipeline onto the cluster; nothing else changes."""
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "SPARK_MASTER": spark.master_url}


def up(s: StackSettings, c: ClusterSettings) -> dict[str, str]:
    from stockpulse.ops.services.broker import ensure_topic

    kafka, spark = kafka_cluster(s, c), spark_cluster(s, c)
    kafka.start()
    ensure_topic(kafka.bootstrap, s.kafka.topic, c.topic_partitions)
    spark.start()
    settings = cluster_env(kafka, spark)
    env_file(s).write_text("".join(f"export {name}={value}\n" for name, value in {**settings, **OWN_OUTPUTS}.items()))
    return settings


def down(s: StackSettings, c: ClusterSettings) -> bool:
    stopped_spark = spark_cluster(s, c).stop()
    stopped_kafka = kafka_cluster(s, c).stop()
    return stopped_spark or stopped_kafka


def status_text(s: StackSettings, c: ClusterSettings) -> str:
    kafka, spark = kafka_cluster(s, c), spark_cluster(s, c)
    nodes = kafka.running()
    return "\n".join([
        "StockPulse local cluster:",
        f"  kafka  {sum(nodes)}/{len(nodes)} nodes running  {kafka.bootstrap}, topic {s.kafka.topic} "
        f"({c.topic_partitions} partitions, replication 3, min.insync.replicas 2)",
        f"  spark  {spark.alive_workers()} workers alive  {spark.master_url}, UI http://127.0.0.1:{c.spark_ui_port}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stockpulse.ops.cluster")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        stack, cluster = StackSettings.from_env(), ClusterSettings.from_env()
        if args.command == "up":
            up(stack, cluster)
            print(status_text(stack, cluster))
            print(f"Point the pipeline at it (then make up, or the producer and spark-submit by hand):\n"
                  f"  . {env_file(stack)}")
        elif args.command == "down":
            print("stopped the local cluster" if down(stack, cluster) else "the local cluster was not running")
        else:
            print(status_text(stack, cluster))
    except StockPulseError as exc:
        print(f"stockpulse: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from stockpulse import logs

    logs.configure()
    sys.exit(main())
