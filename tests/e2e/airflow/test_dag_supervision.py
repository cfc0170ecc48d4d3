"""The DAG against real PostgreSQL, a real broker and the real Spark consumer (``airflow dags test``).

One test walks the story the DAG exists for: the consumer is down and ticks wait on the topic;
a run starts it and the ticks land; the consumer is SIGKILLed in the middle of a batch while
ticks are still arriving, the next run restarts it and every tick lands exactly once, in
PostgreSQL and in the lake.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from stockpulse.ops.checkpoints import batch_ids
from stockpulse.ops.supervisor import running_consumer
from tests.integration.helpers import csv_slice, lake_table

from .steps import produce, row_counts, run_dag_test, start_producer, topic_size, wait_for

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


def _batch_in_flight(checkpoint_dir: Path) -> bool:
    """The PostgreSQL query has planned a batch (``offsets/N``) that it has not committed yet."""
    planned, committed = batch_ids(checkpoint_dir / "postgres" / "offsets"), batch_ids(checkpoint_dir / "postgres" / "commits")
    return bool(planned) and max(planned) not in committed


def _lake_keys(lake: Path) -> list[tuple[int, int]]:
    table = lake_table(lake)
    return [] if table is None else list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))


def test_dag_starts_a_stopped_consumer_and_restarts_one_killed_mid_batch(dag_env, pipeline_env, consumer_paths,
                                                                         tmp_path):
    url, chk, lake = pipeline_env["DATABASE_URL"], Path(pipeline_env["CHECKPOINT_DIR"]), Path(pipeline_env["LAKE_PATH"])
    produce(pipeline_env, 40)
    before = topic_size(pipeline_env)
    assert before > 0 and running_consumer(consumer_paths) is None

    output = _run_ok(dag_env)
    assert "supervisor: start: consumer is not running" in output
    first = running_consumer(consumer_paths)
    assert first is not None, "the DAG run did not leave a consumer running"
    wait_for(lambda: row_counts(url)[0] >= before, f"{before} ticks produced before the run did not land")
    assert row_counts(url) == (before, before)

    # Ticks keep arriving (up to 90 s of them); kill the job while its PostgreSQL query has a batch
    # planned but not committed.
    producer = start_producer(pipeline_env, csv_slice(tmp_path / "slice.csv", 3000), tick_interval=0.1)
    try:
        def mid_batch() -> bool:
            assert producer.poll() is None, "the producer finished before a batch was caught in flight"
            return row_counts(url)[0] > before and _batch_in_flight(chk)

        wait_for(mid_batch, "no batch in flight while ticks arrived", timeout=600, interval=0.05)
        os.killpg(first, signal.SIGKILL)
        landed_at_kill = row_counts(url)[0]
        assert producer.poll() is None, "ticks must still be arriving when the consumer dies"
        time.sleep(3)  # a few more ticks reach the topic with no consumer; the rest of the CSV is not needed
    finally:
        if producer.poll() is None:
            producer.send_signal(signal.SIGTERM)  # the producer flushes what it sent, then exits 130
        assert producer.wait(120) in (0, 130)
    wait_for(lambda: running_consumer(consumer_paths) is None, "the killed consumer still looks alive")
    after = topic_size(pipeline_env)
    assert landed_at_kill < after

    output = _run_ok(dag_env)
    assert "supervisor: start: consumer is not running" in output
    second = running_consumer(consumer_paths)
    assert second is not None and second != first, "the killed consumer was not restarted"
    wait_for(lambda: row_counts(url)[0] >= after and len(_lake_keys(lake)) >= after,
             "ticks produced around the kill did not land in both sinks")
    total, distinct = row_counts(url)
    assert total == after and distinct == total, f"{total} rows, {distinct} distinct records, {after} produced"
    keys = _lake_keys(lake)
    assert len(keys) == len(set(keys)) == after, f"lake: {len(keys)} rows, {len(set(keys))} distinct, {after} produced"


def test_a_consumer_that_dies_after_the_start_attempt_turns_the_run_red(dag_env, pipeline_env, consumer_paths):
    """Ticks wait, but the job exits at start-up: Spark refuses the master URL. The run must end
    red with the reason in its log."""
    produce(pipeline_env, 5)
    env = {**dag_env, "SPARK_MASTER": "nowhere://cluster"}
    state, output = _run(env)
    assert state == "failed"
    assert "pipeline unhealthy after the supervisor's action 'start'" in output
    assert "consumer is not running" in output and str(consumer_paths.log_file) in output


def test_a_stalled_consumer_is_restarted(dag_env, pipeline_env, consumer_paths):
    """A consumer frozen with SIGSTOP is alive but commits nothing while new ticks wait."""
    from stockpulse.ops.checkpoints import read_progress

    url, chk, topic = pipeline_env["DATABASE_URL"], Path(pipeline_env["CHECKPOINT_DIR"]), pipeline_env["KAFKA_TOPIC"]
    produce(pipeline_env, 10)
    _run_ok(dag_env)
    first = running_consumer(consumer_paths)
    wait_for(lambda: row_counts(url)[0] >= topic_size(pipeline_env), "the first ticks did not land")
    os.killpg(first, signal.SIGSTOP)
    produce(pipeline_env, 10)
    # Setup, not an assertion: let the frozen job's last commit age past the threshold.
    wait_for(lambda: time.time() - read_progress(chk, "postgres", topic).committed_at > 35,
             "the last commit never aged", interval=5)

    output = _run_ok(dag_env, {"stall_seconds": 30})
    assert "supervisor: restart:" in output and "committed nothing" in output
    second = running_consumer(consumer_paths)
    assert second is not None and second != first
    wait_for(lambda: row_counts(url)[0] >= topic_size(pipeline_env), "ticks sent to the frozen job did not land")
    total, distinct = row_counts(url)
    assert total == distinct == topic_size(pipeline_env)


def test_catch_up_mode_processes_the_backlog_inside_the_task(dag_env, pipeline_env, consumer_paths):
    produce(pipeline_env, 25)
    output = _run_ok(dag_env, {"mode": "catch_up"})
    assert "consumer --once:" in output  # the job's own log lines are in the task log
    assert running_consumer(consumer_paths) is None, "catch-up must not leave a job running"
    total, distinct = row_counts(pipeline_env["DATABASE_URL"])
    assert total == distinct == topic_size(pipeline_env)


def test_a_start_on_an_idle_topic_is_green_only_once_every_query_ran_a_trigger(dag_env, pipeline_env, consumer_paths):
    """Nothing waits on the topic, so no batch can prove the new job works: its heartbeat must."""
    from stockpulse.stream.job_files import read_heartbeat

    assert topic_size(pipeline_env) == 0
    started = time.time()
    output = _run_ok(dag_env)
    assert "supervisor: start: consumer is not running" in output
    pid = running_consumer(consumer_paths)
    beats = read_heartbeat(consumer_paths.job.heartbeat, pid)
    assert beats and set(beats) == {"ticks_to_parquet", "ticks_to_postgres"}
    assert all(beat is not None and beat > started for beat in beats.values()), beats
