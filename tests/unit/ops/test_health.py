"""The health verdict with plain observations, and the health task's red on a silent restart."""

from __future__ import annotations

import pytest

from stockpulse.ops import health, quality, tasks
from stockpulse.ops.health import HEALTHY, UNHEALTHY, WAITING, Observation, assess

NOW = 10_000.0
QUERIES = ("ticks_to_parquet", "ticks_to_postgres")


def obs(pid=7, lag=0, committed_at=None, started_at=NOW - 3600, beat=None) -> Observation:
    """``beat``: when every query last reported a trigger (None: no heartbeat file yet)."""
    return Observation(pid=pid, started_at=started_at, lag={"postgres": {0: lag, 1: 0}, "parquet": {0: 0}},
                       committed_at={"postgres": committed_at, "parquet": committed_at}, observed_at=NOW,
                       heartbeat=None if beat is None else {q: beat for q in QUERIES})


def test_up_to_date_consumer_is_healthy():
    assert assess(obs(lag=0), "supervise", None, 180).state == HEALTHY


def test_dead_consumer_after_the_start_attempt_is_unhealthy_with_the_reason():
    verdict = assess(obs(pid=None, lag=5), "supervise", NOW - 30, 180)
    assert verdict.state == UNHEALTHY and "not running" in verdict.reasons[0]


def test_a_restart_on_an_idle_topic_is_not_healthy_until_every_query_ran_a_trigger():
    """Lag 0: no batch will ever prove the restarted job works; its queries' heartbeat must."""
    restarted = NOW - 30
    verdict = assess(obs(lag=0, beat=None), "supervise", restarted, 180)
    assert verdict.state == WAITING and "no heartbeat from its queries in the 30 s since the (re)start" \
        in verdict.reasons[0]
    assert assess(obs(lag=0, beat=NOW - 100), "supervise", restarted, 180).state == WAITING  # an older beat
    half = obs(lag=0, beat=NOW - 5)
    half.heartbeat["ticks_to_postgres"] = None
    verdict = assess(half, "supervise", restarted, 180)
    assert verdict.state == WAITING and "no heartbeat from ticks_to_postgres" in verdict.reasons[0]
    assert assess(obs(lag=0, beat=NOW - 5), "supervise", restarted, 180).state == HEALTHY


def test_restarted_consumer_must_commit_after_its_restart():
    assert assess(obs(lag=50, committed_at=NOW - 100, beat=NOW - 5), "supervise", NOW - 30, 180).state == WAITING
    assert assess(obs(lag=50, committed_at=NOW - 5, beat=NOW - 5), "supervise", NOW - 30, 180).state == HEALTHY


def test_stalled_consumer_with_waiting_records_is_unhealthy():
    verdict = assess(obs(lag=50, committed_at=NOW - 900), "supervise", None, 180)
    assert verdict.state == UNHEALTHY and "stalled" in verdict.reasons[0]
    assert assess(obs(lag=50, committed_at=NOW - 60), "supervise", None, 180).state == HEALTHY


def test_a_sink_on_a_slow_trigger_gets_three_of_its_intervals_before_it_counts_as_stalled():
    """LAKE_TRIGGER_INTERVAL=10 minutes: the lake is quiet for minutes by design; the PostgreSQL
    query on its 5 s trigger keeps the DAG's 180 s."""
    slow_lake = Observation(7, NOW - 3600, {"parquet": {0: 500}, "postgres": {0: 500}},
                            {"parquet": NOW - 1500, "postgres": NOW - 200}, NOW, triggers={"parquet": 600.0,
                                                                                        "postgres": 5.0})
    found = health.stalls(slow_lake, 180)
    assert [(s.sink, s.threshold) for s in found] == [("postgres", 180)]  # the lake: 1,500 s < 3 x 600 s
    late = Observation(7, NOW - 3600, {"parquet": {0: 500}}, {"parquet": NOW - 1900}, NOW, triggers={"parquet": 600.0})
    assert str(health.stalls(late, 180)[0]) == ("parquet: committed nothing for 1900 s (threshold 1800 s) "
                                                "while 500 records wait")


def test_each_sink_is_observed_with_its_own_trigger(tmp_path):
    from stockpulse.config import ConsumerSettings, interval_seconds

    settings = ConsumerSettings.from_env({"TRIGGER_INTERVAL": "500 milliseconds", "LAKE_TRIGGER_INTERVAL": "10 minutes"})
    assert [interval_seconds(settings.trigger_of(sink)) for sink in ("parquet", "postgres")] == [600.0, 0.5]
    same = ConsumerSettings.from_env({"TRIGGER_INTERVAL": "5 Seconds"})
    assert interval_seconds(same.trigger_of("parquet")) == interval_seconds("5000 milliseconds") == 5.0


def test_catch_up_leaves_no_consumer_running_and_that_is_fine():
    assert assess(obs(pid=None, lag=3), "catch_up", None, 180).state == HEALTHY


def test_total_lag_is_the_slowest_sink():
    o = Observation(7, None, {"postgres": {0: 5, 1: 5}, "parquet": {0: 30}}, {}, NOW)
    assert o.total_lag() == 30


def test_a_restarted_job_that_never_beats_turns_the_health_task_red(monkeypatch, tmp_path):
    """The pid is alive and the topic idle, but Spark never ran a trigger: red once the timeout ends."""
    monkeypatch.setenv("STOCKPULSE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "chk"))
    monkeypatch.setattr(health, "observe", lambda *args: Observation(7, NOW - 20, {"postgres": {0: 0}},
                                                                       {"postgres": None}, NOW))
    monkeypatch.setattr(quality, "last_checked_to", lambda url: None)
    monkeypatch.setattr(health, "freshness", lambda url, since: (None, 0))
    supervision = {"mode": "supervise", "action": "restart", "restarted_at": NOW - 20}
    with pytest.raises(tasks.PipelineUnhealthy, match=r"still waiting when the health timeout ran out.*"
                                                       r"no heartbeat from its queries"):
        tasks.health_task(supervision, 180, timeout=0, poll=0)
