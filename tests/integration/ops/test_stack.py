"""`make services` / `make down` through the stack CLI, on private ports and a private state dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT, StackSettings
from stockpulse.jars import postgres_copy_jars, spark_kafka_package
from tests.integration.helpers import lake_table, postgres_counts, produced_rows, records_in_topic

from stockpulse.kafka_offsets import topic_partitions
from stockpulse.ops.services.processes import free_port, port_open
from tests.conftest import run_cli


@pytest.fixture
def stack_env():
    state = Path(tempfile.mkdtemp(prefix="stockpulse-stack-"))
    os.chmod(state, 0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env.update({"STOCKPULSE_STATE_DIR": str(state), "PG_EMBEDDED_PORT": str(free_port()),
                "KAFKA_EMBEDDED_PORT": str(free_port()), "KAFKA_EMBEDDED_CONTROLLER_PORT": str(free_port()),
                "KAFKA_TOPIC": "stack_ticks", "LAKE_PATH": str(state / "lake"), "CHECKPOINT_DIR": str(state / "chk")})
    yield env
    run_cli(["-m", "stockpulse.ops.stack", "down"], env)
    shutil.rmtree(state, ignore_errors=True)


def test_services_twice_then_down(stack_env):
    for _ in range(2):  # the second run must find everything running and change nothing
        result = run_cli(["-m", "stockpulse.ops.stack", "services"], stack_env)
        assert result.returncode == 0, result.stderr
        assert "postgres   running" in result.stdout and "broker     running" in result.stdout
    pg_port, kafka_port = int(stack_env["PG_EMBEDDED_PORT"]), int(stack_env["KAFKA_EMBEDDED_PORT"])
    assert topic_partitions(f"127.0.0.1:{kafka_port}", "stack_ticks") == [0, 1, 2]
    from stockpulse.db import connect

    with connect(StackSettings.from_env(stack_env).postgres.url) as conn:
        assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == 0

    down = run_cli(["-m", "stockpulse.ops.stack", "down"], stack_env)
    assert down.returncode == 0, down.stderr
    assert "stopped postgres" in down.stdout and "stopped broker" in down.stdout
    assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", kafka_port)


def test_taken_port_is_a_clear_error(stack_env):
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(stack_env["KAFKA_EMBEDDED_PORT"])))
        blocker.listen()
        result = run_cli(["-m", "stockpulse.ops.stack", "services"], stack_env)
    assert result.returncode == 2
    assert "already taken" in result.stderr and "KAFKA_EMBEDDED_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def _services(env) -> None:
    result = run_cli(["-m", "stockpulse.ops.stack", "services"], env)
    assert result.returncode == 0, result.stderr[-2000:]


def _down(env) -> None:
    result = run_cli(["-m", "stockpulse.ops.stack", "down"], env)
    assert result.returncode == 0 and "stopped broker" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_by_hand_after_down_and_up_keeps_every_message(stack_env):
    """The README's "Running each part by hand", as written, across `make down` / `make services`:
    the topic keeps every message, `--once` lands them, and `spark-submit --packages --jars` does too,
    with PostgreSQL written from the executors."""
    import subprocess
    import sys

    bootstrap = f"127.0.0.1:{stack_env['KAFKA_EMBEDDED_PORT']}"
    url = StackSettings.from_env(stack_env).postgres.url
    _services(stack_env)
    first = run_cli(["producer/producer.py", "--tick-interval", "0", "--limit", "300"], stack_env)
    assert first.returncode == 0, first.stderr[-2000:]
    sent = produced_rows(first.stderr)
    _down(stack_env)
    _services(stack_env)
    assert records_in_topic(bootstrap, "stack_ticks") == sent, "make down / make up lost or doubled messages"

    once = run_cli(["consumer/consumer.py", "--once"], stack_env)
    assert once.returncode == 0, once.stderr[-3000:]
    assert postgres_counts(url) == {"rows": sent, "distinct": sent, "bad_trade_value": 0}

    resumed = run_cli(["producer/producer.py", "--tick-interval", "0", "--limit", "200", "--resume"], stack_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    total = sent + produced_rows(resumed.stderr)
    _down(stack_env)
    _services(stack_env)
    venv_bin = Path(sys.executable).parent
    submit = subprocess.run(
        ["spark-submit", "--packages", spark_kafka_package(), "--jars", ",".join(map(str, postgres_copy_jars())),
         "consumer/consumer.py", "--once"],
        env={**stack_env, "PATH": f"{venv_bin}{os.pathsep}{stack_env.get('PATH', '')}", "VIRTUAL_ENV": str(venv_bin.parent)},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert "with the official Kafka source" in submit.stdout  # spark-submit merges Python's stderr into stdout
    assert "PostgreSQL is written from the executors" in submit.stdout  # the writer's --jars reached the job
    assert postgres_counts(url) == {"rows": total, "distinct": total, "bad_trade_value": 0}
    assert lake_table(Path(stack_env["LAKE_PATH"])).num_rows == total
