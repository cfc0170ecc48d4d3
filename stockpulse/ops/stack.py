"""``make up`` / ``make down`` / ``make services`` / ``make status``: the whole pipeline on one machine.

Services are entries in :data:`SERVICES`, started in order and stopped in reverse. Each knows
whether it is infrastructure (started by ``make services`` too) and how to describe where it
runs. Later services (Airflow, the dashboard) add an entry here and nothing else changes.
Every start is idempotent, so running ``make up`` twice is harmless.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stockpulse.config import PROJECT_ROOT, StackSettings, redact_url
from stockpulse.errors import StockPulseError
from stockpulse.ops.services import airflow as airflow_service
from stockpulse.ops.services import dashboard as dashboard_service
from stockpulse.ops.services import processes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    name: str
    infrastructure: bool
    start: Callable[[StackSettings], None]
    stop: Callable[[StackSettings], bool]
    describe: Callable[[StackSettings], str]
    running: Callable[[StackSettings], bool]


def _pid_file(s: StackSettings, name: str) -> Path:
    return s.paths.pid_file(name)


def _log_file(s: StackSettings, name: str) -> Path:
    return s.paths.log_file(name)


def embedded_postgres(s: StackSettings):
    from stockpulse.ops.services.postgres import EmbeddedPostgres

    return EmbeddedPostgres(s.paths.postgres_data, s.postgres.embedded_port, _log_file(s, "postgres"),
                            s.postgres.passfile)


# -- the lake's S3 store (LAKE_STORE=s3) ---------------------------------------------------------
def embedded_seaweedfs(s: StackSettings):
    from stockpulse.config import LakeStoreSettings
    from stockpulse.ops.services.seaweedfs import SeaweedFS

    return SeaweedFS(s.state_dir / "seaweedfs", LakeStoreSettings.from_env().seaweedfs_port,
                     s.paths.secrets / "seaweedfs-s3.json", _log_file(s, "seaweedfs"), _pid_file(s, "seaweedfs"))


def with_lake_store(s: StackSettings, keys: bool = False) -> StackSettings:
    """Under ``LAKE_STORE=s3`` (and a LAKE_PATH not already ``s3a://``), the stack's settings and the
    environment of everything it starts point the lake at the embedded SeaweedFS: the lake and
    the compacted zone in its bucket, the checkpoints local in their own directory, the raw zone
    partitioned by index unless LAKE_PARTITION_BY is set, and (``keys``,
    for ``up``) the AWS variables with its key pair. Otherwise ``s`` unchanged."""
    import os

    from stockpulse.config import S3_LAKE_CHECKPOINT_DIR, S3_LAKE_LOCATIONS, LakeStoreSettings

    if not LakeStoreSettings.from_env().embedded:
        return s
    os.environ.update(S3_LAKE_LOCATIONS)
    if not os.environ.get("CHECKPOINT_DIR", "").strip():
        os.environ["CHECKPOINT_DIR"] = S3_LAKE_CHECKPOINT_DIR
    if not os.environ.get("LAKE_PARTITION_BY", "").strip():
        # index,date writes an object per row during a replay: 29k PUTs held the first batch for
        # minutes and the supervisor restarted it as stalled. By index, a batch is a few objects;
        # compaction still gives the compacted zone its files per index.
        os.environ["LAKE_PARTITION_BY"] = "index"
    if keys:
        os.environ.update(embedded_seaweedfs(s).client_env())
    return StackSettings.from_env()


def _start_seaweedfs(s: StackSettings) -> None:
    from stockpulse.config import LakeStoreSettings

    if LakeStoreSettings.from_env().embedded:
        embedded_seaweedfs(s).start()


def _seaweedfs_running(s: StackSettings) -> bool:
    return embedded_seaweedfs(s).is_running()


def _describe_seaweedfs(s: StackSettings) -> str:
    store = embedded_seaweedfs(s)
    return f"{store.endpoint}, bucket {store.bucket} (S3 API, keys in {store.identities}; data in {store.data_dir})"


def _seaweedfs_relevant(s: StackSettings) -> bool:
    """Shown by ``make status`` under LAKE_STORE=s3, or while it runs anyway."""
    from stockpulse.config import LakeStoreSettings

    return LakeStoreSettings.from_env().embedded or _seaweedfs_running(s)


# -- PostgreSQL -------------------------------------------------------------------------------
def _start_postgres(s: StackSettings) -> None:
    from stockpulse.db import apply_init_sql

    if s.postgres.embedded:
        embedded_postgres(s).start()
    apply_init_sql(s.postgres.url)


def _stop_postgres(s: StackSettings) -> bool:
    return embedded_postgres(s).stop() if s.postgres.embedded else False


def _postgres_running(s: StackSettings) -> bool:
    return embedded_postgres(s).is_running() if s.postgres.embedded else True


# -- broker -----------------------------------------------------------------------------------
def embedded_kafka(s: StackSettings):
    from stockpulse.ops.services.broker import EmbeddedKafka

    return EmbeddedKafka(s.paths.kafka, s.kafka.embedded_port, s.kafka.embedded_controller_port,
                         _log_file(s, "broker"), _pid_file(s, "broker"), heap=s.kafka.embedded_heap,
                         partitions=s.kafka.partitions)


def _start_broker(s: StackSettings) -> None:
    from stockpulse.ops.services.broker import ensure_topic

    if s.kafka.embedded:
        embedded_kafka(s).start()
    ensure_topic(s.kafka.bootstrap_servers, s.kafka.topic, s.kafka.partitions)


def _broker_running(s: StackSettings) -> bool:
    host, _, port = s.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    return port.isdigit() and processes.port_open(host, int(port))


def _stop_broker(s: StackSettings) -> bool:
    return embedded_kafka(s).stop() if s.kafka.embedded else False


def _describe_broker(s: StackSettings) -> str:
    where = f"{s.kafka.bootstrap_servers}, topic {s.kafka.topic}"
    if not s.kafka.embedded:
        return f"{where} (external)"
    from stockpulse.jars import KAFKA_BROKER, pinned_version

    return f"{where} (embedded Apache Kafka {pinned_version(KAFKA_BROKER, 'kafka_2.13')}, data in {s.paths.kafka})"


# -- jobs -------------------------------------------------------------------------------------
def _start_consumer(s: StackSettings) -> None:
    # Under the same lock as the Airflow supervisor, so the two can never start it twice; the job
    # itself refuses to run twice on the same checkpoints (its own lock), whoever starts it.
    from stockpulse.ops import supervisor

    paths = supervisor.ConsumerPaths.of(s)
    with supervisor.consumer_lock(paths.lock_file):
        supervisor.start(s, paths)


def _stop_consumer(s: StackSettings) -> bool:
    # No supervisors' lock: Airflow is stopped before the consumer, and `make down` must not wait
    # out a catch-up holding that lock; the catch-up is the consumer, and is stopped with it.
    from stockpulse.ops import supervisor

    return supervisor.stop(supervisor.ConsumerPaths.of(s))


def _consumer_running(s: StackSettings) -> bool:
    """By the job lock (a consumer started by hand counts), not only by the pid file."""
    from stockpulse.ops import supervisor

    paths = supervisor.ConsumerPaths.of(s)
    try:
        return supervisor.running_consumer(paths) is not None
    except StockPulseError:  # the lock is held by a process we cannot identify: something runs
        return True


def _start_producer(s: StackSettings) -> None:
    done = s.paths.run / "producer.done"
    if done.exists():
        logger.info("producer already replayed the CSV (remove %s or run 'make replay' to send it again)", done)
        return
    settings = s.producer
    command = [sys.executable, str(PROJECT_ROOT / "producer" / "producer.py"),
               "--tick-interval", str(settings.tick_interval), "--no-progress"]
    # --resume: a producer killed mid-replay (or stopped by `make down`) continues where its rows
    # stopped landing, instead of sending the history twice. `make replay` turns it off.
    if settings.resume:
        command.append("--resume")
    if settings.loop:
        command.append("--loop")
    if settings.start_date:
        command += ["--start-date", settings.start_date]
    # Mark completion so a second `make up` does not replay the history again.
    shell = " ".join(f"'{c}'" for c in command) + f" && touch '{done}'"
    processes.start_detached("producer", ["/bin/sh", "-c", shell], _pid_file(s, "producer"),
                             _log_file(s, "producer"), env=processes.job_env(), cwd=PROJECT_ROOT)


def _detached(name: str) -> tuple[Callable[[StackSettings], bool], Callable[[StackSettings], bool]]:
    def stop(s: StackSettings) -> bool:
        return processes.stop_detached(name, _pid_file(s, name), timeout=30)

    def running(s: StackSettings) -> bool:
        return processes.read_pid(_pid_file(s, name)) is not None

    return stop, running


_producer_stop, _producer_running = _detached("producer")

SERVICES: list[Service] = [
    Service("seaweedfs", True, _start_seaweedfs, lambda s: embedded_seaweedfs(s).stop(), _describe_seaweedfs,
            _seaweedfs_running),
    Service("postgres", True, _start_postgres, _stop_postgres,
            lambda s: f"{redact_url(s.postgres.url)}" + (" (embedded)" if s.postgres.embedded else " (external)"),
            _postgres_running),
    Service("broker", True, _start_broker, _stop_broker, _describe_broker, _broker_running),
    Service("consumer", False, _start_consumer, _stop_consumer,
            lambda s: f"Spark job, log {_log_file(s, 'consumer')}", _consumer_running),
    Service("producer", False, _start_producer, _producer_stop,
            lambda s: f"CSV replay, log {_log_file(s, 'producer')}", _producer_running),
    Service("airflow", False, airflow_service.start, airflow_service.stop, airflow_service.describe,
            airflow_service.running),
    Service("dashboard", False, dashboard_service.start, dashboard_service.stop, dashboard_service.describe,
            dashboard_service.running),
]


def up(s: StackSettings, infrastructure_only: bool = False) -> None:
    s = with_lake_store(s, keys=True)
    for service in SERVICES:
        if infrastructure_only and not service.infrastructure:
            continue
        service.start(s)
    print(status_text(s, infrastructure_only))
    print("Stop everything with: make down")


def down(s: StackSettings) -> None:
    for service in reversed(SERVICES):
        try:
            if service.stop(s):
                print(f"stopped {service.name}")
        except StockPulseError as exc:
            print(f"could not stop {service.name}: {exc}", file=sys.stderr)


def status_text(s: StackSettings, infrastructure_only: bool = False) -> str:
    lines = ["StockPulse:"]
    for service in SERVICES:
        if infrastructure_only and not service.infrastructure:
            continue
        if service.name == "seaweedfs" and not _seaweedfs_relevant(s):
            continue  # LAKE_STORE=local: nothing to say
        state = "running" if service.running(s) else "stopped"
        lines.append(f"  {service.name:<10} {state:<8} {service.describe(s)}")
    return "\n".join(lines)


EXPORTED = ("LAKE_PATH", "LAKE_COMPACTED_PATH", "CHECKPOINT_DIR", "LAKE_PARTITION_BY", "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
"""What ``up`` may set for the jobs it starts (under ``LAKE_STORE=s3``), so a job run by hand can
take the same: ``eval "$(python -m stockpulse.ops.stack env)"``."""


def env_lines(s: StackSettings) -> list[str]:
    """``export`` lines of the settings ``up`` gives its jobs (the store's key pair included: this
    is for the user's own shell, as ``aws configure export-credentials`` is)."""
    import os
    import shlex

    with_lake_store(s, keys=True)
    return [f"export {name}={shlex.quote(os.environ[name])}" for name in EXPORTED if os.environ.get(name, "").strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stockpulse.ops.stack")
    parser.add_argument("command", choices=["up", "down", "services", "status", "env"])
    args = parser.parse_args(argv)
    try:
        settings = with_lake_store(StackSettings.from_env())
        if args.command == "up":
            up(settings)
        elif args.command == "services":
            up(settings, infrastructure_only=True)
        elif args.command == "down":
            down(settings)
        elif args.command == "env":
            print("\n".join(env_lines(settings)))
        else:
            print(status_text(settings))
    except StockPulseError as exc:
        print(f"stockpulse: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from stockpulse import logs

    logs.configure()
    sys.exit(main())
