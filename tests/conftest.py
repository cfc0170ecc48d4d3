"""Session-scoped real services for the integration and end-to-end tests.

Each service starts once per test session on a free port under a temporary directory, so the
tests never touch a user's running pipeline (ports 5432/9092 are left alone). Each test then
gets its own database and its own topic, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stockpulse.ops.services.processes import free_port  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
LOW_DISK_GIB = 8
"""Below this much free space the suite fails in ways that do not name the disk: SeaweedFS turns
its volumes read-only and the S3 lake tests wait out their timeouts, class archives go missing."""


def pytest_report_header(config) -> str:
    """Free space where the services write, first in the output, so a full disk is seen first."""
    where = tempfile.gettempdir()
    free = shutil.disk_usage(where).free / 1024**3
    line = f"free disk in {where}: {free:.1f} GiB"
    if free < LOW_DISK_GIB:
        line += f" -- LOW: the suite writes several GiB there (under {LOW_DISK_GIB} GiB, expect S3 and Spark failures)"
    return line


@pytest.fixture(scope="session")
def pg_server():
    """An embedded PostgreSQL on a free port; yields the server object.

    Its directory is made with mkdtemp (mode 755 parents) rather than pytest's tmp_path, whose
    private parent the unprivileged server user could not enter when tests run as root.
    """
    from stockpulse.ops.services.postgres import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="stockpulse-test-pg-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "data", free_port(), base / "postgres.log", base / "secrets" / "pgpass",
                              database="postgres")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(pg_server):
    """A fresh database with init.sql applied, dropped after the test."""
    import psycopg

    from stockpulse.db import apply_init_sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_url = pg_server.admin_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER stockpulse')
    url = pg_server.url_for(name)
    apply_init_sql(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def embedded_kafka(home: Path):
    """An Apache Kafka node on free ports under ``home`` (not started)."""
    from stockpulse.ops.services.broker import EmbeddedKafka

    return EmbeddedKafka(home, free_port(), free_port(), home / "broker.log", home / "broker.pid", heap="384m")


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory):
    """One Apache Kafka node (KRaft) for the whole session; yields the server object."""
    server = embedded_kafka(tmp_path_factory.mktemp("kafka"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(kafka_server):
    """The session broker's bootstrap address."""
    return kafka_server.bootstrap


@pytest.fixture
def topic(broker):
    """A new 3-partition topic for this test."""
    from stockpulse.ops.services.broker import ensure_topic

    name = f"ticks_{uuid.uuid4().hex[:10]}"
    ensure_topic(broker, name, 3)
    return name


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory):
    """SeaweedFS (``weed mini``, S3 API with a generated key pair, bucket ``stockpulse``) on free
    loopback ports for the whole session; yields the server object (``client_env()``: AWS_*)."""
    from stockpulse.ops.services.processes import free_port_block
    from stockpulse.ops.services.seaweedfs import SeaweedFS, all_ports

    home = tmp_path_factory.mktemp("seaweedfs")
    server = SeaweedFS(home / "data", free_port_block(tuple(all_ports(0)), stop=50_000),
                       home / "secrets" / "seaweedfs-s3.json", home / "seaweedfs.log", home / "seaweedfs.pid")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pipeline_env(broker, topic, database_url, tmp_path):
    """Environment for running the producer and consumer as real processes against test services."""
    env = dict(os.environ)
    # a developer's own choice stays out
    for chosen_by_a_test in ("PRODUCER_CLIENT", "LAKE_TRIGGER_INTERVAL", "FIRST_BATCH_OFFSETS"):
        env.pop(chosen_by_a_test, None)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "KAFKA_TOPIC": topic,
        "DATABASE_URL": database_url,
        "LAKE_PATH": str(tmp_path / "lake"),
        "CHECKPOINT_DIR": str(tmp_path / "chk"),
        "STOCKPULSE_STATE_DIR": str(tmp_path / "state"),
        "PYSPARK_PYTHON": sys.executable,
        "TRIGGER_INTERVAL": "1 second",
        "PYTHONPATH": str(ROOT),
    })
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a project entry point with the venv's Python; output captured as text."""
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
