"""The broker dies for good under a running replay: the producer says so as it happens, then stops.

Issue 12, case 3: after a broker restart every later send failed, nothing was logged until the end,
the process exited 1 and its summary still claimed every row of the file. Here the producer CLI
runs against a private broker (never the session one) whose JVM is ``kill -9``ed mid-replay and
not restarted. The producer must log the failures while it is still replaying, exit 1 without a
traceback, and every row its summary counts as sent must be in the topic (plus at most the ones
it counts as failed, which the broker may have written without acknowledging); starting the broker
again afterwards (its log is on disk) shows that.

The producer gives up on a record after ``PRODUCER_DELIVERY_TIMEOUT_SECONDS`` (120 s by default,
6 s here). The first version of this test found the producer hanging for good in its final flush
(kafka-python 3.0 leaves records of an idempotent producer incomplete when the broker dies
mid-request); the flush is bounded now. The CLI runs through a small launcher only so that the test
can print the producer's threads (SIGUSR1) if it ever hangs again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import kafka.errors
import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.kafka_offsets import KafkaOffsetsError, newest_records
from stockpulse.ops.services.broker import ensure_topic
from stockpulse.replay.csv_rows import TickRow, read_rows
from stockpulse.replay.resume import record_position
from tests.conftest import embedded_kafka
from tests.integration.helpers import csv_slice, records_in_topic

pytestmark = pytest.mark.slow

DELIVERY_TIMEOUT_S = 6
"""PRODUCER_DELIVERY_TIMEOUT_SECONDS for the test's producer (default: 120 s)."""

LAUNCHER = """
import faulthandler, runpy, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)
sys.argv[0] = "producer/producer.py"
runpy.run_path("producer/producer.py", run_name="__main__")
"""

SUMMARY = re.compile(r"^sent (\d+) ticks \((\d+) rows\) in [\d.]+ s, (\d+) bad rows, (\d+) failed sends\b")
SEND_FAILED = re.compile(r"ERROR stockpulse\.replay\.producer: send failed \(\d+ so far\): (\w+): ")


class ProducerRun:
    """The producer CLI as a process whose stderr lines are read as they come, each with its arrival time."""

    def __init__(self, csv: Path, env: dict[str, str], tick_interval: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "--csv", str(csv), "--tick-interval", str(tick_interval), "--no-progress"],
            env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[tuple[float, bool, str]] = []  # (arrival, process still running, line)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), self.proc.poll() is None, line.rstrip("\n")))

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, _, line in self.lines)

    def finish(self, timeout: float) -> int:
        """The exit code; a process still running after ``timeout`` fails the test with its threads' stacks."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            pytest.fail(f"the producer hung: still running {timeout:.0f} s after the broker died, although every "
                        f"record expires {DELIVERY_TIMEOUT_S} s after it is sent and the final flush is "
                        f"bounded; its stderr and threads:\n"
                        f"{self.stderr[-6000:]}")
        self._reader.join(10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def summary(self) -> tuple[float, dict[str, int]]:
        """When the summary line came, and its counts."""
        for arrived, _, line in self.lines:
            if match := SUMMARY.match(line):
                return arrived, dict(zip(("ticks", "rows", "bad_rows", "failed_sends"), map(int, match.groups())))
        raise AssertionError(f"no summary line in the producer's stderr:\n{self.stderr[-3000:]}")


@pytest.fixture
def private_broker(tmp_path):
    """A broker of this test's own, so killing it leaves the session broker alone."""
    server = embedded_kafka(tmp_path / "kafka")
    server.start()
    yield server
    server.stop()


def wait_for_records(bootstrap: str, topic: str, at_least: int, run: ProducerRun, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while count_or_zero(bootstrap, topic) < at_least:
        assert run.proc.poll() is None, f"the producer finished before the broker was killed:\n{run.stderr[-2000:]}"
        assert time.monotonic() < deadline, f"fewer than {at_least} records within {timeout:.0f} s"
        time.sleep(0.1)


def count_or_zero(bootstrap: str, topic: str) -> int:
    """Records in the topic; 0 while its new partitions still elect their leader."""
    try:
        return records_in_topic(bootstrap, topic)
    except KafkaOffsetsError:
        return 0


def freeze_then_kill(server) -> None:
    """SIGSTOP, then SIGKILL a second later: produce requests are surely in flight when it dies.

    Under load that is the usual way a broker dies; a bare SIGKILL between two ticks would test
    that case only sometimes.
    """
    pid = int(server.pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.is_running():
        assert time.monotonic() < deadline, "the killed broker is still running"
        time.sleep(0.1)


def topic_rows(bootstrap: str, topic: str, timeout: float = 60) -> Counter:
    """(index, date) of every record in the topic; waits out a restarted broker's leader elections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = newest_records(bootstrap, topic, 10**9)
            break
        except KafkaOffsetsError:
            assert time.monotonic() < deadline, f"the restarted broker did not serve {topic} within {timeout:.0f} s"
            time.sleep(0.5)
    return Counter(record_position(value) for partition in records.values() for _, value in partition)


def test_broker_gone_for_good_is_reported_as_it_happens_and_counted_exactly(private_broker, tmp_path):
    topic = f"ticks_{uuid.uuid4().hex[:10]}"
    ensure_topic(private_broker.bootstrap, topic, 3)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap, "KAFKA_TOPIC": topic,
           "STOCKPULSE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(PROJECT_ROOT),
           "PRODUCER_DELIVERY_TIMEOUT_SECONDS": str(DELIVERY_TIMEOUT_S)}
    csv = csv_slice(tmp_path / "slice.csv", 1200)  # about 310 ticks: 15 s at 20 ticks/s
    rows_in_file = sum(1 for row in read_rows(csv) if isinstance(row, TickRow))

    run = ProducerRun(csv, env, tick_interval=0.05)
    try:
        wait_for_records(private_broker.bootstrap, topic, 100, run)
        freeze_then_kill(private_broker)
        exit_code = run.finish(timeout=15 + DELIVERY_TIMEOUT_S + 30)
    finally:
        run.kill()

    assert exit_code == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    failures = [(arrived, running, match) for arrived, running, line in run.lines
                if (match := SEND_FAILED.search(line))]
    assert failures, f"no 'send failed' line:\n{run.stderr[-3000:]}"
    first_failure, running, match = failures[0]
    assert isinstance(getattr(kafka.errors, match.group(1), None), type), f"names no Kafka error: {match.group(0)}"
    summary_arrived, counts = run.summary()
    assert running and summary_arrived - first_failure > 3, (
        f"the first send failure was logged {summary_arrived - first_failure:.1f} s before the summary, "
        "not while the replay went on")
    assert counts["failed_sends"] > 0 and counts["rows"] >= 100, counts
    assert counts["rows"] + counts["failed_sends"] == rows_in_file, counts

    private_broker.start()  # its log is on disk: it comes back with every acknowledged record
    landed = topic_rows(private_broker.bootstrap, topic)
    # Every acknowledged row is there; a record the broker wrote but died before acknowledging is
    # counted as failed, yet may be in its log: so at most rows + failed, never fewer than rows.
    assert counts["rows"] <= sum(landed.values()) <= counts["rows"] + counts["failed_sends"], (
        f"the summary says {counts['rows']} rows and {counts['failed_sends']} failed, the topic holds "
        f"{sum(landed.values())}")
    assert max(landed.values()) == 1, "a row was written twice"
