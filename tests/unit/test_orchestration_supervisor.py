"""The supervisor's decisions with plain values, and its lock with real file locks."""

from __future__ import annotations

import threading

import pytest

from stockpulse.errors import ServiceError
from stockpulse.orchestration.supervisor import (
    NOTHING, RESTART, START, ConsumerPaths, consumer_command, consumer_lock, decide, progress_age,
)
from stockpulse.config import StackSettings


def test_a_dead_consumer_is_started():
    assert decide(None, None, 0, 180).action == START
    assert decide(None, 10, 500, 180).action == START


def test_a_silent_consumer_is_restarted_only_while_records_wait():
    stalled = decide(42, 600, 120, 180)
    assert stalled.action == RESTART and "600 s" in stalled.reason and "120 records" in stalled.reason
    assert decide(42, 600, 0, 180).action == NOTHING  # nothing to read: silence is normal
    assert decide(42, 60, 120, 180).action == NOTHING  # working through the backlog
    assert decide(42, None, 120, 180).action == NOTHING


def test_progress_age_counts_from_the_latest_sign_of_life():
    assert progress_age(1000, 900, [950, None]) == 50
    assert progress_age(1000, 990, [950, 800]) == 10
    assert progress_age(1000, None, [None, None]) is None


def test_paths_are_the_ones_make_up_uses(tmp_path):
    paths = ConsumerPaths.of(StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path)}))
    assert paths.pid_file == tmp_path / "run" / "consumer.pid"
    assert paths.log_file == tmp_path / "logs" / "consumer.log"
    assert consumer_command()[1].endswith("consumer/consumer.py") and consumer_command(once=True)[-1] == "--once"


def test_the_lock_admits_one_holder_at_a_time(tmp_path):
    lock = tmp_path / "run" / "consumer.lock"
    held, release = threading.Event(), threading.Event()

    def holder():
        with consumer_lock(lock):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(ServiceError, match="another supervisor holds"):
            with consumer_lock(lock, timeout=0):
                pass
    finally:
        release.set()
        thread.join()
    with consumer_lock(lock, timeout=0):
        pass
