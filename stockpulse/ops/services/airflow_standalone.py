"""``airflow standalone`` without the task-log servers, which would listen on every interface.

The scheduler and the triggerer each start a log server (ports 8793/8794) that Airflow binds to
``[::]``/``0.0.0.0`` with no setting to change it (``airflow/utils/serve_logs/core.py``, 3.3.2):
on a laptop that exposes task logs, which may quote connection details, to the whole network.
Both commands take ``--skip-serve-logs``, but ``standalone`` starts them without it. This entry
point runs standalone with the flag added. Nothing is lost on one machine: the API server reads
task logs from the local log folder; only the live tail of a running task's log, which it would
also try the log server for, notes that the server is absent.

Run by :func:`stockpulse.ops.services.airflow.start_standalone` as
``python -m stockpulse.ops.services.airflow_standalone``.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

LOG_SERVING_COMMANDS = ("scheduler", "triggerer")


def with_skip_serve_logs(name: str, command: list[str]) -> list[str]:
    """``command`` for standalone's sub-process ``name``, told not to serve logs where it would."""
    if name in LOG_SERVING_COMMANDS and "--skip-serve-logs" not in command:
        return [*command, "--skip-serve-logs"]
    return command


def main() -> None:
    from airflow.cli.commands import standalone_command

    base = getattr(standalone_command, "SubCommand", None)
    if base is None:  # a later Airflow changed its internals: run it as it is, and say so
        logger.warning("cannot turn off Airflow's log servers in this Airflow version: they listen on all interfaces")
    else:
        class LoopbackSubCommand(base):
            def __init__(self, parent, name: str, command: list[str], env: dict[str, str]):
                super().__init__(parent, name, with_skip_serve_logs(name, command), env)

        standalone_command.SubCommand = LoopbackSubCommand
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "standalone"]
    airflow_main()


if __name__ == "__main__":
    main()
