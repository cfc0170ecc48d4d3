"""A three-node Apache Kafka cluster on one machine: what ``make cluster-up`` starts.

Each node is a full broker and a KRaft controller (:class:`EmbeddedKafka`, three JVMs), so the
controller quorum survives one node down, and topics are replicated three times with
``min.insync.replicas=2``: a producer with ``acks=all`` and the consumers carry on while any one
node is killed. All nodes listen on 127.0.0.1, on ports ``base``, ``base+1``, ``base+2`` (brokers)
and ``base+100``.. (controllers), with state under ``home/node-<id>``. The point is to run the same
code as on a real cluster, only with settings changed, and to test what a real cluster does when
a node dies; it is not faster than one node on one machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from stockpulse.ops.services.broker import START_TIMEOUT_SECONDS, EmbeddedKafka, cluster_id

logger = logging.getLogger(__name__)

NODES = 3
CONTROLLER_PORT_OFFSET = 100


@dataclass(frozen=True)
class KafkaCluster:
    home: Path
    base_port: int
    partitions: int = 6
    heap: str = "384m"

    @property
    def cluster_id(self) -> str:
        """One id for every node, made once and kept: nodes formatted with different ids never join."""
        path = self.home / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(cluster_id() + "\n")
        return path.read_text().strip()

    @property
    def nodes(self) -> list[EmbeddedKafka]:
        ids = range(1, NODES + 1)
        voters = ",".join(f"{i}@127.0.0.1:{self.base_port + CONTROLLER_PORT_OFFSET + i - 1}" for i in ids)
        identity = self.cluster_id
        return [
            EmbeddedKafka(self.home / f"node-{i}", self.base_port + i - 1, self.base_port + CONTROLLER_PORT_OFFSET + i - 1,
                          self.home / f"node-{i}.log", self.home / f"node-{i}.pid", heap=self.heap,
                          partitions=self.partitions, node_id=i, voters=voters, replication=NODES,
                          cluster_id=identity)
            for i in ids
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self) -> None:
        """Launch every node that is not running, then wait until each serves (idempotent)."""
        started = time.monotonic()
        nodes = self.nodes
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_ready()
        wait_until_brokers(self.bootstrap, NODES, START_TIMEOUT_SECONDS)
        logger.info("Kafka cluster of %d nodes ready on %s in %.1f s", NODES, self.bootstrap,
                    time.monotonic() - started)

    def stop(self) -> bool:
        """Stop every node at once: one after the other, each waits on a quorum the last left."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(NODES) as pool:
            return any(list(pool.map(lambda node: node.stop(), self.nodes)))

    def running(self) -> list[bool]:
        return [node.is_running() for node in self.nodes]


def wait_until_brokers(bootstrap: str, count: int, timeout: float) -> None:
    """Block until the cluster's metadata lists ``count`` live brokers."""
    from confluent_kafka.admin import AdminClient

    from stockpulse.errors import ServiceError

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        try:
            if len(admin.list_topics(timeout=5).brokers) >= count:
                return
        except Exception as exc:  # KafkaException while nodes start
            logger.debug("cluster not complete yet: %s", exc)
        if time.monotonic() > deadline:
            raise ServiceError(f"the Kafka cluster at {bootstrap} did not reach {count} live brokers within {timeout:.0f} s")
        time.sleep(0.5)


def in_sync_replicas(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> number of in-sync replicas: 3 everywhere once a restarted node has caught up."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 0})
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    return {pid: len(p.isrs) for pid, p in metadata.partitions.items()}
