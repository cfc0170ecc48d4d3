"""The Airflow service for ``make up``: ``airflow standalone`` detached, its DAG unpaused.

Airflow gets its own home under the state directory (``<state_dir>/airflow``: its SQLite
metadata DB, logs and the generated admin password), the project's ``airflow/dags`` folder and the
stack's environment, so the DAG's tasks see the same ``DATABASE_URL``, broker and checkpoints as
the consumer ``make up`` started. It runs from the project's one venv (see docs/airflow.md).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Mapping

from stockpulse.config import PROJECT_ROOT, StackSettings, env_int, env_str
from stockpulse.errors import ConfigError, ServiceError
from stockpulse.ops.services import processes

logger = logging.getLogger(__name__)

DAG_ID = "stockpulse_pipeline"
COMPACTION_DAG_ID = "lake_compaction"
DAGS_FOLDER = PROJECT_ROOT / "airflow" / "dags"
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def home(s: StackSettings) -> Path:
    return s.paths.airflow_home


def port(env: Mapping[str, str] = os.environ) -> int:
    """The API port: ``AIRFLOW_PORT``, else Airflow's own ``AIRFLOW__API__PORT`` (a user who
    exported only that must get the health wait, base URL and printed URL on that port), else 8080."""
    ours, theirs = (env_int(env, name, 8080, 1) if env_str(env, name, "") else None
                    for name in ("AIRFLOW_PORT", "AIRFLOW__API__PORT"))
    if ours and theirs and ours != theirs:
        raise ConfigError(f"AIRFLOW_PORT={ours} and AIRFLOW__API__PORT={theirs} disagree: set one of them")
    return ours or theirs or 8080


def base_url(api_port: int) -> str:
    return f"http://localhost:{api_port}"


def airflow_env(base: Mapping[str, str], airflow_home: Path, api_port: int) -> dict[str, str]:
    """``base`` plus what standalone needs; settings the user already exported win.

    The API port and base URL move together: tasks reach the execution API at the base URL.
    The API listens on loopback only (like the dashboard); export ``AIRFLOW__API__HOST=0.0.0.0``
    to serve other machines.
    """
    env = dict(base)
    env["AIRFLOW_HOME"] = str(airflow_home)
    defaults = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",  # the admin UI stays on loopback unless the user says otherwise
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url(api_port),
    }
    for name, value in defaults.items():
        env.setdefault(name, value)
    # The venv's bin first, so standalone's own sub-commands use this venv's airflow.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def seed_admin_password(airflow_home: Path) -> None:
    """Write the admin password file before Airflow starts, readable by its owner only.

    Left to itself, Airflow's simple auth manager generates the password and prints it, so it
    lands in ``airflow.log``, and writes the file with the default (world-readable) mode. Given a
    file that already names ``admin``, it prints nothing and keeps the password. An existing file
    (an earlier start) is kept and only made private.
    """
    path = airflow_home / PASSWORD_FILE
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.chmod(airflow_home, 0o700)
    if admin_password(airflow_home) is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"admin": secrets.token_urlsafe(12)}) + "\n")
    os.chmod(path, 0o600)


def admin_password(airflow_home: Path) -> str | None:
    try:
        return json.loads((airflow_home / PASSWORD_FILE).read_text()).get("admin")
    except (OSError, ValueError):
        return None


class Client:
    """The few REST calls the stack and the tests need (``/auth/token``, ``/api/v2``)."""

    def __init__(self, url: str, airflow_home: Path) -> None:
        self.url = url.rstrip("/")
        self.airflow_home = airflow_home
        self._token: str | None = None

    def _http(self):
        import httpx

        return httpx.Client(base_url=self.url, timeout=30)

    def healthy(self) -> bool:
        """True when the API answers and the scheduler reports healthy."""
        import httpx

        try:
            with self._http() as http:
                body = http.get("/api/v2/monitor/health").json()
        except (httpx.HTTPError, ValueError):
            return False
        return body.get("metadatabase", {}).get("status") == "healthy" and \
            body.get("scheduler", {}).get("status") == "healthy"

    def token(self) -> str:
        if self._token is None:
            password = admin_password(self.airflow_home)
            if password is None:
                raise ServiceError(f"no admin password in {self.airflow_home / PASSWORD_FILE} yet")
            with self._http() as http:
                response = http.post("/auth/token", json={"username": "admin", "password": password})
                response.raise_for_status()
                self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs):
        with self._http() as http:
            return http.request(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)

    def unpause(self, dag_id: str = DAG_ID) -> bool:
        """True once the DAG exists and is unpaused (False: not parsed yet)."""
        response = self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def trigger(self, dag_id: str = DAG_ID, conf: dict | None = None) -> str:
        response = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        response = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        response.raise_for_status()
        return response.json()["state"]


def wait_until(condition, timeout: float, what: str, log: Path | None = None, interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            hint = f"; see {log}" if log else ""
            raise ServiceError(f"{what} within {timeout:.0f} s{hint}")
        time.sleep(interval)


def start_standalone(airflow_home: Path, api_port: int, base_env: Mapping[str, str], pid_file: Path,
                     log_file: Path, timeout: float = 300.0, dags: tuple[str, ...] = (DAG_ID,)) -> Client:
    """Start ``airflow standalone`` detached (idempotent), wait for health, unpause ``dags``."""
    env = airflow_env(base_env, airflow_home, api_port)
    seed_admin_password(airflow_home)
    # standalone without its log servers, which would listen on every interface (see that module)
    processes.start_detached("airflow", [sys.executable, "-m", "stockpulse.ops.services.airflow_standalone"],
                             pid_file, log_file, env=env, cwd=PROJECT_ROOT)
    client = Client(base_url(api_port), airflow_home)

    def alive_and_healthy() -> bool:
        if processes.read_pid(pid_file) is None:
            raise ServiceError(f"airflow standalone exited during start-up; see {log_file}")
        return client.healthy()

    wait_until(alive_and_healthy, timeout, "Airflow did not report healthy", log_file)
    wait_until(lambda: admin_password(airflow_home) is not None, timeout, "no admin password was generated", log_file)
    for dag_id in dags:
        wait_until(lambda: client.unpause(dag_id), timeout,
                   f"DAG {dag_id} did not appear (check import errors in the UI)", log_file)
    logger.info("Airflow is up at %s; %s unpaused", client.url, ", ".join(dags))
    return client


def _pid_file(s: StackSettings) -> Path:
    return s.paths.pid_file("airflow")


def _log_file(s: StackSettings) -> Path:
    return s.paths.log_file("airflow")


def start(s: StackSettings) -> None:
    """Start Airflow detached with the stack's environment (idempotent); both DAGs run on their
    schedules (the tests start Airflow with only the pipeline's DAG unpaused)."""
    start_standalone(home(s), port(), processes.job_env(), _pid_file(s), _log_file(s),
                     dags=(DAG_ID, COMPACTION_DAG_ID))


def stop(s: StackSettings) -> bool:
    """Stop it (SIGTERM to its process group); True when something was running."""
    return processes.stop_detached("airflow", _pid_file(s), timeout=60)


def running(s: StackSettings) -> bool:
    return processes.read_pid(_pid_file(s)) is not None


def describe(s: StackSettings) -> str:
    return (f"UI {base_url(port())} (DAGs {DAG_ID}, {COMPACTION_DAG_ID}), user admin, password in "
            f"{home(s) / PASSWORD_FILE}, log {_log_file(s)}")
