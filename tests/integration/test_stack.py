"""`make services` / `make down` through the stack CLI, on private ports and a private state dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stockpulse.kafka_offsets import topic_partitions
from stockpulse.services.processes import free_port, port_open
from tests.conftest import run_cli


@pytest.fixture
def stack_env():
    state = Path(tempfile.mkdtemp(prefix="stockpulse-stack-"))
    os.chmod(state, 0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env.update({"STOCKPULSE_STATE_DIR": str(state), "PG_EMBEDDED_PORT": str(free_port()),
                "KAFKA_EMBEDDED_PORT": str(free_port()), "KAFKA_TOPIC": "stack_ticks"})
    yield env
    run_cli(["-m", "stockpulse.stack", "down"], env)
    shutil.rmtree(state, ignore_errors=True)


def test_services_twice_then_down(stack_env):
    for _ in range(2):  # the second run must find everything running and change nothing
        result = run_cli(["-m", "stockpulse.stack", "services"], stack_env)
        assert result.returncode == 0, result.stderr
        assert "postgres   running" in result.stdout and "broker     running" in result.stdout
    pg_port, kafka_port = int(stack_env["PG_EMBEDDED_PORT"]), int(stack_env["KAFKA_EMBEDDED_PORT"])
    assert topic_partitions(f"127.0.0.1:{kafka_port}", "stack_ticks") == [0, 1, 2]
    from stockpulse.db import connect

    with connect(f"postgresql://stockpulse@127.0.0.1:{pg_port}/stocks") as conn:
        assert conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0] == 0

    down = run_cli(["-m", "stockpulse.stack", "down"], stack_env)
    assert down.returncode == 0, down.stderr
    assert "stopped postgres" in down.stdout and "stopped broker" in down.stdout
    assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", kafka_port)


def test_taken_port_is_a_clear_error(stack_env):
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(stack_env["KAFKA_EMBEDDED_PORT"])))
        blocker.listen()
        result = run_cli(["-m", "stockpulse.stack", "services"], stack_env)
    assert result.returncode == 2
    assert "already taken" in result.stderr and "KAFKA_EMBEDDED_PORT" in result.stderr
    assert "Traceback" not in result.stderr
