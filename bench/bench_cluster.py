"""The same job on ``local[2]`` with one broker and on the local cluster (Spark standalone, two
workers of one core; three Kafka nodes, replication 3), in one run.

Usage: python bench/bench_cluster.py [--ticks 20000] [--batch-rows 10000]

Both runs read the same rows (one replay of ``--ticks`` ticks into each setup's topic) with
``consumer.py --once``, the official Kafka source and layout ``index``, each into its own fresh
database, lake and checkpoints; both sinks must hold every row. Results go to
``bench/results/cluster-<UTC time>.json`` and ``bench/results/cluster-latest.json``.

On two cores the cluster is not faster: the master, two worker daemons, two executor JVMs and three
brokers share the cores that ``local[2]`` has to itself, every record is written three times, and
tasks travel over RPC. The figures say what that overhead costs, which is what a user weighs
before spreading out; the gain comes with machines, by settings alone (``SPARK_MASTER``,
``KAFKA_BOOTSTRAP_SERVERS``, more workers and partitions).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_pipeline import end_to_end, private_services, produce, versions, write_results  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.ops.services.broker import ensure_topic  # noqa: E402
from stockpulse.ops.services.kafka_cluster import KafkaCluster  # noqa: E402
from stockpulse.ops.services.processes import free_port, free_port_block  # noqa: E402
from stockpulse.ops.services.spark_cluster import SparkStandalone  # noqa: E402

logger = logging.getLogger("bench")


def run_both(args, work: Path, server, broker) -> dict:
    """The same replay through ``local[2]`` with ``broker`` and through the local cluster."""
    kafka = KafkaCluster(work / "cluster-kafka", free_port_block((0, 1, 2, 100, 101, 102)))
    spark = SparkStandalone(work / "cluster-spark", free_port(), free_port_block((0, 1, 2)))
    started = datetime.now(timezone.utc)
    results: dict = {"started": started.isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "versions": versions(),
                     "cluster": {"spark_workers": 2, "worker_cores": spark.worker_cores,
                                 "worker_memory": spark.worker_memory, "kafka_nodes": 3, "replication": 3,
                                 "partitions": kafka.partitions}}
    try:
        kafka.start()
        spark.start()
        setups = {
            "local": (broker.bootstrap, 3, {"SPARK_MASTER": "local[2]"}),
            "cluster": (kafka.bootstrap, kafka.partitions, {"SPARK_MASTER": spark.master_url}),
        }
        results["runs"] = []
        for label, (bootstrap, partitions, extra) in setups.items():
            ensure_topic(bootstrap, "bench_cluster", partitions)
            sent = produce(bootstrap, "bench_cluster", args.ticks)
            logger.info("%s: %d rows produced at %d rows/s; running the job", label, sent["rows"], sent["rows_per_s"])
            run = end_to_end(server, bootstrap, "bench_cluster", sent, "official", "index", args.batch_rows, work,
                             label=f"{label}_", **extra)
            results["runs"].append({"setup": label, "spark_master": extra["SPARK_MASTER"].split(":")[0],
                                    "topic_partitions": partitions, "producer": sent, **run})
        local, cluster = results["runs"]
        results["cluster_over_local"] = {
            key: round(cluster[key] / local[key], 3) for key in ("rows_per_s_steady", "rows_per_s_wall")
        } | {"startup_s": round(cluster["startup_s"] / local["startup_s"], 3),
             "producer_rows_per_s": round(cluster["producer"]["rows_per_s"] / local["producer"]["rows_per_s"], 3)}
    finally:
        spark.stop()
        kafka.stop()
    return results


def main() -> int:
    logs.configure()
    parser = argparse.ArgumentParser(description="StockPulse: local[2] against the local cluster")
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=10_000,
                        help="maxOffsetsPerTrigger: small enough for several batches, so a steady state exists")
    args = parser.parse_args()

    with private_services("stockpulse-bench-cluster-") as (work, server, broker):
        results = run_both(args, work, server, broker)

    print(write_results(results, "cluster-"))
    return 0


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    logger.info("benchmark took %.0f s", time.monotonic() - start)
    sys.exit(code)
