"""The job's small first micro-batch: when it applies, when a query is done, and the hand-over."""

from __future__ import annotations

import pytest

from stockpulse.config import ConsumerSettings
from stockpulse.errors import ConfigError
from stockpulse.stream.first_batch import describe, first_batch_cap, found_nothing, settle


@pytest.mark.parametrize(("env", "cap"), [
    ({}, 5_000),  # the default: 5,000 before batches of 100,000
    ({"FIRST_BATCH_OFFSETS": "0"}, 0),  # off
    ({"MAX_OFFSETS_PER_TRIGGER": "400"}, 0),  # the job's batches are smaller already
    ({"MAX_OFFSETS_PER_TRIGGER": "5000"}, 0),  # as large: nothing to gain from a second start
    ({"MAX_OFFSETS_PER_TRIGGER": "0"}, 5_000),  # no cap on the others: the first one still has one
    ({"FIRST_BATCH_OFFSETS": "200", "MAX_OFFSETS_PER_TRIGGER": "400"}, 200),
])
def test_the_first_batch_is_capped_only_below_the_jobs_own_cap(env, cap):
    assert first_batch_cap(ConsumerSettings.from_env(env)) == cap


def test_a_bad_first_batch_cap_names_the_variable():
    with pytest.raises(ConfigError, match="FIRST_BATCH_OFFSETS"):
        ConsumerSettings.from_env({"FIRST_BATCH_OFFSETS": "-1"})


def _source(start, end, latest):
    return {"startOffset": start, "endOffset": end, "latestOffset": latest}


@pytest.mark.parametrize(("progress", "done"), [
    ({"numInputRows": 0, "sources": [_source({"t": {"0": 5}}, {"t": {"0": 5}}, {"t": {"0": 5}})]}, True),
    ({"numInputRows": 0, "sources": []}, True),  # a first trigger without data
    # A batch that read to the latest offset is not enough: on a restart the first trigger
    # replays the batch the checkpoint had planned, and its report says nothing of the backlog.
    ({"numInputRows": 399, "sources": [_source({"t": {"0": 1}}, {"t": {"0": 400}}, {"t": {"0": 400}})]}, False),
    ({"numInputRows": 7, "sources": [_source({"t": {"0": 1}}, {"t": {"0": 8}}, None)]}, False),
    ({"numInputRows": 0, "sources": [_source({"t": {"0": 1}}, {"t": {"0": 8}}, None)]}, False),  # offsets moved
    (None, False),  # no report: the query ended before its first trigger, so start it again
])
def test_once_is_done_after_the_first_batch_only_when_it_found_nothing(progress, done):
    assert found_nothing(progress) is done


def test_the_first_trigger_is_over_once_a_report_is_kept_and_the_trigger_is_idle():
    from types import SimpleNamespace

    from stockpulse.stream.first_batch import first_trigger_over

    def query(progress, active):
        return SimpleNamespace(lastProgress=progress, status={"isTriggerActive": active})

    assert not first_trigger_over(query(None, False))  # not started, or its first trigger is running
    assert not first_trigger_over(query({"numInputRows": 5}, True))
    assert first_trigger_over(query({"numInputRows": 0}, False))


def test_a_first_batch_is_described_by_rows_and_seconds():
    assert describe(None, 5000) == describe({"numInputRows": 0}, 5000) == "no data"
    assert describe({"numInputRows": 5000, "batchDuration": 4321}, 5000) == "5,000 messages in 4.3 s"
    assert describe({"numInputRows": 399, "batchDuration": 4500}, 100).endswith("replayed as it was)")


class Query:
    """A stand-in for a StreamingQuery: active until stopped, its trigger busy for ``busy`` polls."""

    def __init__(self, name, busy=0, error=None):
        self.name, self.id, self.busy, self.error = name, f"id-{name}", busy, error
        self.isActive, self.stops = True, 0

    @property
    def status(self):
        self.busy -= 1
        return {"isTriggerActive": self.busy >= 0}

    def exception(self):
        return self.error

    def stop(self):
        self.stops += 1
        self.isActive = False


def test_each_query_is_handed_over_once_its_first_trigger_is_over():
    lake, postgres = Query("lake", busy=2), Query("postgres")
    reported = {"id-lake"}  # the PostgreSQL query has not finished its first trigger yet
    handed = []

    def restart(sink, query):
        handed.append((sink, query.stops))
        reported.add("id-postgres")  # it does while the lake is handed over
        return None if sink == "lake" else Query("postgres again")

    over = lambda q: q.id in reported and not q.status["isTriggerActive"]  # noqa: E731
    final = settle({"lake": lake, "postgres": postgres}, restart, over, poll_seconds=0)
    assert handed == [("lake", 1), ("postgres", 1)]  # each stopped (once, when idle) before its successor
    assert final["lake"] is lake  # done as it was
    assert final["postgres"].name == "postgres again"


def test_a_query_that_fails_in_its_first_batch_stops_the_others_and_raises():
    lake, postgres = Query("lake"), Query("postgres", error=RuntimeError("COPY failed"))
    with pytest.raises(RuntimeError, match="COPY failed"):
        settle({"lake": lake, "postgres": postgres}, lambda sink, q: None, lambda q: False, poll_seconds=0)
    assert lake.stops == 1


def test_a_restart_that_spark_refuses_stops_the_other_queries_and_raises():
    lake, postgres = Query("lake", busy=5), Query("postgres")

    def restart(sink, query):
        raise RuntimeError("checkpoint is locked")

    with pytest.raises(RuntimeError, match="checkpoint is locked"):
        settle({"lake": lake, "postgres": postgres}, restart, lambda q: not q.status["isTriggerActive"],
               poll_seconds=0)
    assert lake.stops == 1 and postgres.stops == 1


def test_a_query_that_ended_with_an_error_is_raised_not_started_again():
    failed = Query("postgres", error=RuntimeError("COPY failed"))
    failed.isActive = False
    with pytest.raises(RuntimeError, match="COPY failed"):
        settle({"postgres": failed}, lambda sink, q: pytest.fail("started again"), lambda q: True, poll_seconds=0)
