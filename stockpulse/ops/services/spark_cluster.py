"""A Spark standalone cluster on one machine: a master and two workers from the installed pyspark.

``spark-class org.apache.spark.deploy.master.Master`` and ``...worker.Worker`` are what Spark's own
``sbin`` scripts run; pyspark's wheel ships ``spark-class`` and the jars, so no download is needed.
Each worker offers bounded cores and memory, so executors are what a real cluster would give the
job. Everything binds 127.0.0.1 (``SPARK_LOCAL_IP`` and ``--host``), and the web UIs move off
8080 (Airflow's port) to ``ui_port`` and the two ports after it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stockpulse.errors import ServiceError
from stockpulse.ops.services.processes import port_open, read_pid, start_detached, stop_detached

logger = logging.getLogger(__name__)

WORKERS = 2
START_TIMEOUT_SECONDS = 120.0


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@dataclass(frozen=True)
class SparkStandalone:
    home: Path
    master_port: int = 7077
    ui_port: int = 18080
    worker_cores: int = 1
    worker_memory: str = "1536m"
    daemon_memory: str = "256m"

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def pid_file(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.home / f"{name}.log"

    @property
    def names(self) -> list[str]:
        return ["master", *(f"worker-{i}" for i in range(1, WORKERS + 1))]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_DAEMON_MEMORY": self.daemon_memory, "SPARK_NO_DAEMONIZE": "1",
                "SPARK_LOG_DIR": str(self.home), "SPARK_WORKER_DIR": str(self.home / "work")}

    def command(self, name: str) -> list[str]:
        spark_class = str(spark_home() / "bin" / "spark-class")
        if name == "master":
            return [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.master_port), "--webui-port", str(self.ui_port)]
        number = int(name.rsplit("-", 1)[1])
        return [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                "--webui-port", str(self.ui_port + number), "--work-dir", str(self.home / name),
                self.master_url]

    def start(self) -> None:
        """Start the master and the workers that are not running, then wait until every worker is
        registered (idempotent)."""
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if not read_pid(self.pid_file("master")):
            # Spark would quietly move a taken UI port, and the wait below would ask another program
            for port, setting in [(self.master_port, "CLUSTER_SPARK_MASTER_PORT"),
                                  *((self.ui_port + i, "CLUSTER_SPARK_UI_PORT") for i in range(WORKERS + 1))]:
                if port_open("127.0.0.1", port):
                    raise ServiceError(f"port {port} is already taken: set {setting}")
        for name in self.names:
            self.start_one(name)
        self.wait_for_workers(WORKERS)
        logger.info("Spark standalone ready at %s with %d workers in %.1f s", self.master_url, WORKERS,
                    time.monotonic() - started)

    def start_one(self, name: str) -> None:
        start_detached(f"spark {name}", self.command(name), self.pid_file(name), self.log_file(name),
                       env=self._env(), cwd=self.home)

    def alive_workers(self) -> int:
        """Workers the master counts as ALIVE (from its UI's JSON; 0 while it is not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
                state = json.load(response)
        except (OSError, ValueError):
            return 0
        return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")

    def wait_for_workers(self, count: int, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_workers() < count:
            if time.monotonic() > deadline:
                raise ServiceError(f"the Spark master at {self.master_url} did not see {count} workers within "
                                   f"{timeout:.0f} s; last worker log line: {self._last_worker_line()} "
                                   f"(logs in {self.home})")
            time.sleep(1)

    def _last_worker_line(self) -> str:
        lines = []
        for name in self.names[1:]:
            try:
                lines += [line for line in self.log_file(name).read_text(errors="replace").splitlines() if line.strip()]
            except OSError:
                continue
        return lines[-1][-300:] if lines else "(no worker log)"

    def stop(self) -> bool:
        """Workers first (their executors go with them), then the master."""
        return any([stop_detached(f"spark {name}", self.pid_file(name), timeout=20) for name in reversed(self.names)])
