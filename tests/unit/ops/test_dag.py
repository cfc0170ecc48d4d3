"""The DAG folder imports cleanly and ``stockpulse_pipeline`` has the issue's tasks, in order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stockpulse.ops.services.airflow import DAG_ID, DAGS_FOLDER


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    """Parse the DAG folder with a throwaway AIRFLOW_HOME (Airflow reads it at import)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(str(DAGS_FOLDER))


def test_dag_folder_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_pipeline_dag_has_the_expected_tasks_in_order(dagbag):
    dag = dagbag.dags[DAG_ID]
    order = ["preflight", "supervise_consumer", "health_report", "data_quality"]
    assert sorted(t.task_id for t in dag.tasks) == sorted(order)
    for upstream, downstream in zip(order, order[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_pipeline_dag_follows_the_house_style(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.doc_md and "stockpulse_pipeline" in dag.doc_md
    assert dag.default_args["retries"] > 0 and dag.default_args["retry_delay"].total_seconds() > 0
    assert dag.params["mode"] == "supervise"
    assert dag.params.get_param("mode").schema["enum"] == ["supervise", "catch_up"]
    assert dag.get_task("data_quality").retries == 0


def test_the_run_never_cuts_its_own_retries_off(dagbag):
    """A run-level timeout shorter than the tasks' time limits with retries would kill a
    catch-up's retries (or the health wait) midway; every task is bounded on its own instead."""
    dag = dagbag.dags[DAG_ID]
    worst = sum(((t.retries + 1) * t.execution_timeout + t.retries * t.retry_delay for t in dag.tasks),
                start=timedelta())
    assert all(t.execution_timeout is not None for t in dag.tasks)
    assert dag.dagrun_timeout is None or dag.dagrun_timeout >= worst


def test_the_health_wait_a_user_may_choose_fits_in_the_health_task(dagbag):
    dag = dagbag.dags[DAG_ID]
    schema = dag.params.get_param("health_timeout_seconds").schema
    assert schema["maximum"] < dag.get_task("health_report").execution_timeout.total_seconds()
    assert schema["minimum"] <= dag.params["health_timeout_seconds"] <= schema["maximum"]


def test_lake_compaction_dag_compacts_then_builds_the_marts(dagbag):
    dag = dagbag.dags["lake_compaction"]
    assert sorted(t.task_id for t in dag.tasks) == ["compact", "dbt_build"]
    assert dag.get_task("dbt_build").upstream_task_ids == {"compact"}
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.schedule is not None
    assert all(t.execution_timeout is not None for t in dag.tasks)
    assert "lake_compaction" in dag.doc_md
