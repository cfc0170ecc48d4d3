"""A real ``airflow standalone`` (what ``make up`` starts): a run triggered through the REST API
succeeds, and a real browser shows the DAG's latest run green on the DAG's page.

Standalone, the database, broker, topic, state and checkpoints all live on free
ports and temporary directories of this test session; the fixture stops Airflow (SIGTERM to its
process group) and the consumer its run started.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.ops import supervisor
from stockpulse.ops.services import airflow as airflow_service
from stockpulse.ops.services import processes

from tests.integration.helpers import listening_addresses

from .steps import paths_for, produce, wait_for

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def module_database_url(pg_server):
    """A database of its own for the module (the session's ``database_url`` is per test)."""
    import psycopg

    from stockpulse.db import apply_init_sql

    name = f"af_{uuid.uuid4().hex[:12]}"
    admin = pg_server.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER stockpulse')
    url = pg_server.url_for(name)
    apply_init_sql(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def standalone(broker, module_database_url, tmp_path_factory):
    """``airflow standalone`` pointed at the test services; yields (client, pipeline env, paths)."""
    from stockpulse.ops.services.broker import ensure_topic

    base = tmp_path_factory.mktemp("standalone")
    topic = f"ticks_{uuid.uuid4().hex[:10]}"
    ensure_topic(broker, topic, 3)
    env = {**os.environ,
           "KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_TOPIC": topic, "DATABASE_URL": module_database_url,
           "LAKE_PATH": str(base / "lake"), "CHECKPOINT_DIR": str(base / "chk"),
           "STOCKPULSE_STATE_DIR": str(base / "state"), "PYSPARK_PYTHON": sys.executable,
           "TRIGGER_INTERVAL": "1 second", "PYTHONPATH": str(PROJECT_ROOT),
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(processes.free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(processes.free_port())}
    paths = paths_for(env)
    pid_file, log_file = base / "airflow.pid", base / "airflow.log"
    try:
        client = airflow_service.start_standalone(base / "airflow", processes.free_port(), env, pid_file,
                                                  log_file, timeout=900)
        yield client, env, paths
    finally:
        processes.stop_detached("airflow", pid_file, timeout=60)
        supervisor.stop(paths)


def test_airflow_listens_on_loopback_only_and_keeps_its_password_out_of_logs(standalone):
    """Issue 12, case 8: the log servers bound every interface, the admin password was printed
    into the log, and the password file and the log were world-readable."""
    import stat

    client, _, _ = standalone
    base = client.airflow_home.parent
    pid = processes.read_pid(base / "airflow.pid")
    assert pid is not None
    assert listening_addresses(pid) == {"127.0.0.1"}, "an Airflow process listens beyond loopback"
    password = airflow_service.admin_password(client.airflow_home)
    assert password and password not in (base / "airflow.log").read_text(errors="replace")
    for private in (base / "airflow.log", client.airflow_home / airflow_service.PASSWORD_FILE):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(client.airflow_home.stat().st_mode) == 0o700


def finished_state(client, run_id: str) -> str | None:
    state = client.run_state(run_id)
    return state if state in ("success", "failed") else None


@pytest.fixture(scope="module")
def successful_run(standalone) -> str:
    """Trigger a run through ``POST /api/v2/dags/{id}/dagRuns`` and wait until it finishes."""
    client, env, _ = standalone
    produce(env, 20)
    run_id = client.trigger(conf={"mode": "supervise", "health_timeout_seconds": 900})
    state = wait_for(lambda: finished_state(client, run_id), f"run {run_id} did not finish", timeout=1800, interval=5)
    assert state == "success", f"run {run_id} ended {state}; task logs under {client.airflow_home / 'logs'}"
    return run_id


def test_a_run_triggered_through_the_rest_api_succeeds(standalone, successful_run):
    client, _, paths = standalone
    assert client.run_state(successful_run) == "success"
    assert supervisor.running_consumer(paths) is not None, "the run did not leave the consumer running"


def latest_run(client) -> dict:
    """The DAG's latest run as the UI orders them (by ``run_after``), once it has finished."""
    def finished():
        response = client.request("GET", f"/api/v2/dags/{airflow_service.DAG_ID}/dagRuns",
                                  params={"order_by": "-run_after", "limit": 1})
        response.raise_for_status()
        runs = response.json()["dag_runs"]
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

    return wait_for(finished, "the latest run did not finish", timeout=1800, interval=5)


def test_the_ui_shows_the_last_run_green(standalone, successful_run, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    client, _, _ = standalone
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(client.url, timeout=120_000)
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(airflow_service.admin_password(client.airflow_home))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/" not in url, timeout=120_000)

            # The DAG's own page: its header's "Latest Run" links to the latest run, with its state
            # badge. The DAG runs every five minutes, so a newer run may appear while we look: then
            # judge that one once it has finished.
            for _ in range(3):
                latest = latest_run(client)
                assert latest["state"] == "success", f"latest run {latest['dag_run_id']} ended {latest['state']}"
                page.goto(f"{client.url}/dags/{airflow_service.DAG_ID}", timeout=120_000)
                stat = page.get_by_test_id("stat").filter(
                    has=page.get_by_role("heading", name="Latest Run", exact=True))
                link = stat.get_by_role("link")
                expect(link).to_be_visible(timeout=120_000)
                if link.get_attribute("href") == f"/dags/{airflow_service.DAG_ID}/runs/{latest['dag_run_id']}":
                    break
            else:
                pytest.fail(f"the DAG page's Latest Run never showed the latest run; it shows {link.get_attribute('href')}")
            expect(link.get_by_test_id("state-badge")).to_have_attribute("aria-label", "success", timeout=120_000)
            page.screenshot(path=str(artifacts_dir / "airflow_dag_run_success.png"), full_page=True)
        finally:
            browser.close()
