"""The health verdict with plain observations."""

from __future__ import annotations

from stockpulse.orchestration.health import HEALTHY, UNHEALTHY, WAITING, Observation, assess

NOW = 10_000.0


def obs(pid=7, lag=0, committed_at=None, started_at=NOW - 3600) -> Observation:
    return Observation(pid=pid, started_at=started_at, lag={"postgres": {0: lag, 1: 0}, "parquet": {0: 0}},
                       committed_at={"postgres": committed_at, "parquet": committed_at}, observed_at=NOW)


def test_up_to_date_consumer_is_healthy():
    assert assess(obs(lag=0), "supervise", None, 180).state == HEALTHY


def test_dead_consumer_after_the_start_attempt_is_unhealthy_with_the_reason():
    verdict = assess(obs(pid=None, lag=5), "supervise", NOW - 30, 180)
    assert verdict.state == UNHEALTHY and "not running" in verdict.reasons[0]


def test_restarted_consumer_must_commit_after_its_restart():
    assert assess(obs(lag=50, committed_at=NOW - 100), "supervise", NOW - 30, 180).state == WAITING
    assert assess(obs(lag=50, committed_at=NOW - 5), "supervise", NOW - 30, 180).state == HEALTHY
    assert assess(obs(lag=0, committed_at=None), "supervise", NOW - 30, 180).state == HEALTHY


def test_stalled_consumer_with_waiting_records_is_unhealthy():
    verdict = assess(obs(lag=50, committed_at=NOW - 900), "supervise", None, 180)
    assert verdict.state == UNHEALTHY and "stalled" in verdict.reasons[0]
    assert assess(obs(lag=50, committed_at=NOW - 60), "supervise", None, 180).state == HEALTHY


def test_catch_up_leaves_no_consumer_running_and_that_is_fine():
    assert assess(obs(pid=None, lag=3), "catch_up", None, 180).state == HEALTHY


def test_total_lag_is_the_slowest_sink():
    o = Observation(7, None, {"postgres": {0: 5, 1: 5}, "parquet": {0: 30}}, {}, NOW)
    assert o.total_lag() == 30
