"""The bodies of the ``stockpulse_pipeline`` tasks: settings in, a JSON-able summary out (XCom).

Settings come from the environment of the Airflow worker (``make up`` starts Airflow with the
stack's environment), read when a task runs, never when the DAG file is parsed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stockpulse.config import ConsumerSettings, StackSettings, local_path
from stockpulse.errors import StockPulseError
from stockpulse.ops import health, preflight, quality, supervisor

logger = logging.getLogger(__name__)

MODES = ("supervise", "catch_up")


class PipelineUnhealthy(StockPulseError):
    """The pipeline is not healthy even after the supervisor acted; the run must go red."""


class QualityViolations(StockPulseError):
    """Rows that landed since the last run break a data-quality rule."""


def local_checkpoints(consumer: ConsumerSettings) -> Path:
    """The checkpoint directory the supervisor reads progress from; it must be on this machine."""
    path = local_path(consumer.checkpoint_dir)
    if path is None:
        raise StockPulseError(f"CHECKPOINT_DIR={consumer.checkpoint_dir} is not on this machine: the supervisor "
                              "reads the job's progress from local checkpoints (mount it, or use a local path)")
    return path


def preflight_task() -> dict:
    return preflight.run(StackSettings.from_env())


def supervise_task(mode: str, stall_seconds: float) -> dict:
    """Start, restart or leave the streaming consumer, or run a bounded catch-up; under the lock."""
    if mode not in MODES:
        raise StockPulseError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    s = StackSettings.from_env()
    consumer = s.consumer
    paths = supervisor.ConsumerPaths.of(s, consumer)
    with supervisor.consumer_lock(paths.lock_file):
        if mode == "catch_up":
            lines = supervisor.run_catch_up(s, paths)
            return {"mode": mode, "action": "catch_up", "reason": f"consumer --once finished ({lines} log lines)",
                    "pid": None, "restarted_at": None}
        obs = health.observe(s, local_checkpoints(consumer), paths)
        decision = supervisor.decide(obs.pid, health.stalls(obs, stall_seconds), obs.total_lag())
        acted_at = time.time()
        pid = supervisor.apply(decision, s, paths)
    restarted_at = acted_at if decision.action != supervisor.NOTHING else None
    return {"mode": mode, "action": decision.action, "reason": decision.reason, "pid": pid,
            "restarted_at": restarted_at, "lag_before": obs.total_lag(), "consumer_log": str(paths.log_file)}


def health_task(supervision: dict, stall_seconds: float, timeout: float, poll: float = 5.0) -> dict:
    """Report lag, freshness and rows since the last run; fail when unhealthy after the supervisor acted.

    A consumer this run (re)started gets ``timeout`` seconds to show every query's heartbeat
    and to commit a batch for each sink with records waiting.
    """
    s = StackSettings.from_env()
    consumer = s.consumer
    paths = supervisor.ConsumerPaths.of(s, consumer)
    deadline = time.monotonic() + timeout
    while True:
        obs = health.observe(s, local_checkpoints(consumer), paths)
        verdict = health.assess(obs, supervision["mode"], supervision.get("restarted_at"), stall_seconds)
        if verdict.state != health.WAITING or time.monotonic() > deadline:
            break
        logger.info("waiting for the consumer: %s", "; ".join(verdict.reasons))
        time.sleep(poll)
    since = quality.last_checked_to(s.postgres.url)
    row_age, rows = health.freshness(s.postgres.url, since)
    report = {
        "state": verdict.state, "reasons": verdict.reasons, "consumer_pid": obs.pid,
        "lag": {sink: {str(p): n for p, n in parts.items()} for sink, parts in obs.lag.items()},
        "total_lag": obs.total_lag(), "seconds_since_last_row": row_age,
        "rows_since_last_run": rows, "last_run_checked_to": since.isoformat() if since else None,
    }
    logger.info("health: %s; consumer pid %s; lag %s (total %d); last row %s s ago; %d rows since %s",
                verdict.state, obs.pid, report["lag"], report["total_lag"],
                f"{row_age:.0f}" if row_age is not None else "never", rows, report["last_run_checked_to"] or "the start")
    if verdict.state != health.HEALTHY:
        waited = " (still waiting when the health timeout ran out)" if verdict.state == health.WAITING else ""
        raise PipelineUnhealthy(
            f"pipeline unhealthy after the supervisor's action '{supervision['action']}'{waited}: "
            f"{'; '.join(verdict.reasons)}; consumer log: {paths.log_file}")
    return report


def quality_task(run_id: str | None, settle: float = 30.0) -> dict:
    """Check the rows landed since the last run; fail, with counts and samples, on any violation."""
    result = quality.check(StackSettings.from_env().postgres.url, run_id, settle)
    found = quality.failures(result["violations"])
    logger.info("quality: %d rows landed in (%s, %s]; %s", result["rows_checked"],
                result["checked_from"] or "start", result["checked_to"], "; ".join(found) or "no violations")
    for sample in result["samples"]:
        logger.warning("violating row: %s", sample)
    if found:
        raise QualityViolations(f"{len(found)} data-quality checks failed on {result['rows_checked']} rows: "
                                + "; ".join(found))
    return result


def compaction_task() -> dict:
    """One pass of the lake compaction (``lake_compaction`` DAG), under its lock, recorded."""
    from stockpulse.config import LakehouseSettings
    from stockpulse.lakehouse.compaction import run_locked

    return run_locked(StackSettings.from_env(), LakehouseSettings.from_env())


def dbt_task() -> dict:
    """``dbt build`` of the marts over the compacted zone. Returns ``{"skipped": reason}`` while the
    zone is still empty (nothing closed yet), so a young lake is not a red run."""
    from stockpulse.lakehouse.dbt_build import CompactedZoneEmpty, run_build

    try:
        return run_build()
    except CompactedZoneEmpty as exc:
        logger.info("dbt build skipped: %s", exc)
        return {"skipped": str(exc)}
