"""
# stockpulse_pipeline: keep the StockPulse streaming job healthy

Every five minutes (and whenever triggered by hand):

1. **preflight**: PostgreSQL and the Kafka broker answer, the topic exists, Java is installed,
   `postgres/init.sql` is applied. A failure names the service that is down and how to start it.
2. **supervise_consumer**: starts the Spark consumer (`consumer/consumer.py`) detached if it is
   not running, or kills and restarts it when one of its sinks committed nothing for
   `stall_seconds` while records wait on the topic. "Running" means holding the job's own lock
   (the job refuses to start twice on the same checkpoints); it uses the same files as `make up`. With `mode = catch_up` it instead runs `consumer.py --once` inside
   the task (a bounded backlog run under Airflow's retries) and leaves the streaming job stopped
   until the next scheduled run.
3. **health_report**: consumer lag per partition (topic high watermark minus the offsets in the
   Spark checkpoints), seconds since the last row landed in `ticks_raw`, rows landed since the
   last run. A consumer this run (re)started must show every query running (a heartbeat from
   Spark's trigger loop, even on an idle topic) and commit what waits within
   `health_timeout_seconds`. Red when the pipeline is unhealthy; the reason is in the log.
4. **data_quality**: on rows landed since the last run, `trade_value = close * volume`,
   `low <= open, close <= high`, no null keys. Violations are counted, sampled in the log and fail
   the task.

Configuration comes from the environment Airflow was started with (see the README's environment
table): `DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_TOPIC`, `CHECKPOINT_DIR`, `STOCKPULSE_STATE_DIR`.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

# airflow/dags/<this file> -> the project root, so `stockpulse` imports (string work only, no I/O).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)


# The health task must end (red, with its reason) before Airflow kills it, so a user's
# health_timeout_seconds has to leave it room for the last observation and the report.
HEALTH_TASK_TIMEOUT = timedelta(minutes=30)
HEALTH_WAIT_MAX_SECONDS = int(HEALTH_TASK_TIMEOUT.total_seconds()) - 300


# No dagrun_timeout: every task has an execution_timeout, and a run-level limit shorter than their
# sum with retries (a catch-up alone may take 3 x 60 min) would cut the retries off.
@dag(
    dag_id="stockpulse_pipeline",
    doc_md=__doc__,
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=None,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=15)},
    tags=["stockpulse", "streaming"],
    params={
        "mode": Param("supervise", type="string", enum=["supervise", "catch_up"],
                      description="supervise: keep the streaming consumer running; catch_up: run "
                                  "consumer.py --once inside the task to process the backlog, then stop"),
        "stall_seconds": Param(180, type="integer", minimum=30,
                               description="restart the consumer when it committed nothing for this "
                                           "long while records wait on the topic"),
        "health_timeout_seconds": Param(600, type="integer", minimum=0, maximum=HEALTH_WAIT_MAX_SECONDS,
                                        description="how long a (re)started consumer may take to show "
                                                    "its queries running and commit waiting records "
                                                    "before the run fails"),
    },
)
def stockpulse_pipeline():
    @task
    def preflight() -> dict:
        from stockpulse.ops.tasks import preflight_task

        return preflight_task()

    @task(execution_timeout=timedelta(minutes=60))
    def supervise_consumer(checked: dict) -> dict:
        from stockpulse.ops.tasks import supervise_task

        params = get_current_context()["params"]
        return supervise_task(params["mode"], params["stall_seconds"])

    # A finding, not a glitch: retrying would only delay the red (it already waits for the job).
    @task(retries=0, execution_timeout=HEALTH_TASK_TIMEOUT)
    def health_report(supervision: dict) -> dict:
        from stockpulse.ops.tasks import health_task

        params = get_current_context()["params"]
        return health_task(supervision, params["stall_seconds"], params["health_timeout_seconds"])

    # No retries: a retry would check the next (empty) window and turn the violations green.
    @task(retries=0)
    def data_quality(report: dict) -> dict:
        from stockpulse.ops.tasks import quality_task

        return quality_task(get_current_context()["run_id"])

    data_quality(health_report(supervise_consumer(preflight())))


stockpulse_pipeline()
