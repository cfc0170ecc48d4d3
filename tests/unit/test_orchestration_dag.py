"""The DAG folder imports cleanly and ``stockpulse_pipeline`` has the issue's tasks, in order."""

from __future__ import annotations

import pytest

from stockpulse.services.airflow import DAG_ID, DAGS_FOLDER


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
