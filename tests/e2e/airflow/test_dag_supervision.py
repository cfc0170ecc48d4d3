"""The DAG against real PostgreSQL, a real broker and the real Spark consumer (``airflow dags test``).

One test walks the story the DAG exists for: the consumer is down and ticks wait on the topic;
a run starts it and the ticks land; the consumer is SIGKILLed, more ticks arrive, the next run
restarts it and every tick lands exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from stockpulse.services import processes

from .steps import produce, row_counts, run_dag_test, topic_size, wait_for

pytestmark = pytest.mark.slow


def _run(env, conf=None) -> tuple[str, str]:
    """(final run state, CLI output) of one ``airflow dags test`` run."""
    result = run_dag_test(env, conf)
    output = result.stdout + result.stderr
    finished = [line for line in output.splitlines() if "DagRun Finished" in line]
    assert finished, output[-5000:]
    state = finished[-1].split(" state=", 1)[1].split(",", 1)[0]
    assert (result.returncode == 0) == (state == "success"), output[-5000:]
    return state, output


def _run_ok(env, conf=None) -> str:
    state, output = _run(env, conf)
    assert state == "success", output[-5000:]
    return output


def test_dag_starts_a_stopped_consumer_and_restarts_a_killed_one(dag_env, pipeline_env, consumer_paths):
    url = pipeline_env["DATABASE_URL"]
    produce(pipeline_env, 40)
    before = topic_size(pipeline_env)
    assert before > 0 and processes.read_pid(consumer_paths.pid_file) is None

    output = _run_ok(dag_env)
    assert "supervisor: start: consumer is not running" in output
    first = processes.read_pid(consumer_paths.pid_file)
    assert first is not None, "the DAG run did not leave a consumer running"
    wait_for(lambda: row_counts(url)[0] >= before, f"{before} ticks produced before the run did not land")
    assert row_counts(url) == (before, before)

    os.killpg(first, signal.SIGKILL)
    wait_for(lambda: processes.read_pid(consumer_paths.pid_file) is None, "the killed consumer still looks alive")
    produce(pipeline_env, 30)
    after = topic_size(pipeline_env)
    assert after > before

    output = _run_ok(dag_env)
    assert "supervisor: start: consumer is not running" in output
    second = processes.read_pid(consumer_paths.pid_file)
    assert second is not None and second != first, "the killed consumer was not restarted"
    wait_for(lambda: row_counts(url)[0] >= after, "ticks produced after the kill did not land")
    total, distinct = row_counts(url)
    assert total == after and distinct == total, f"{total} rows, {distinct} distinct records, {after} produced"


def test_a_consumer_that_dies_after_the_start_attempt_turns_the_run_red(dag_env, pipeline_env, consumer_paths):
    """Ticks wait, but the job exits at start-up: the official Kafka jar is not installed, so
    KAFKA_SOURCE=builtin is refused. The run must end red with the reason in its log."""
    produce(pipeline_env, 5)
    env = {**dag_env, "KAFKA_SOURCE": "builtin"}
    state, output = _run(env)
    assert state == "failed"
    assert "pipeline unhealthy after the supervisor's action 'start'" in output
    assert "consumer is not running" in output and str(consumer_paths.log_file) in output


def test_a_stalled_consumer_is_restarted(dag_env, pipeline_env, consumer_paths):
    """A consumer frozen with SIGSTOP is alive but commits nothing while new ticks wait."""
    from stockpulse.orchestration.checkpoints import read_progress

    url, chk, topic = pipeline_env["DATABASE_URL"], Path(pipeline_env["CHECKPOINT_DIR"]), pipeline_env["KAFKA_TOPIC"]
    produce(pipeline_env, 10)
    _run_ok(dag_env)
    first = processes.read_pid(consumer_paths.pid_file)
    wait_for(lambda: row_counts(url)[0] >= topic_size(pipeline_env), "the first ticks did not land")
    os.killpg(first, signal.SIGSTOP)
    produce(pipeline_env, 10)
    # Setup, not an assertion: let the frozen job's last commit age past the threshold.
    wait_for(lambda: time.time() - read_progress(chk, "postgres", topic).committed_at > 35,
             "the last commit never aged", interval=5)

    output = _run_ok(dag_env, {"stall_seconds": 30})
    assert "supervisor: restart:" in output and "committed nothing" in output
    second = processes.read_pid(consumer_paths.pid_file)
    assert second is not None and second != first
    wait_for(lambda: row_counts(url)[0] >= topic_size(pipeline_env), "ticks sent to the frozen job did not land")
    total, distinct = row_counts(url)
    assert total == distinct == topic_size(pipeline_env)


def test_catch_up_mode_processes_the_backlog_inside_the_task(dag_env, pipeline_env, consumer_paths):
    produce(pipeline_env, 25)
    output = _run_ok(dag_env, {"mode": "catch_up"})
    assert "consumer --once:" in output  # the job's own log lines are in the task log
    assert processes.read_pid(consumer_paths.pid_file) is None, "catch-up must not leave a job running"
    total, distinct = row_counts(pipeline_env["DATABASE_URL"])
    assert total == distinct == topic_size(pipeline_env)
