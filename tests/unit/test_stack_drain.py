"""`make down` lets the consumer land what the in-memory broker holds before stopping it."""

from types import SimpleNamespace

import pytest

from stockpulse import stack
from stockpulse.config import StackSettings
from stockpulse.orchestration import health, supervisor


def settings(tmp_path, embedded=True):
    env = {"STOCKPULSE_STATE_DIR": str(tmp_path / "state")}
    if not embedded:
        env["KAFKA_BOOTSTRAP_SERVERS"] = "kafka:9092"
    return StackSettings.from_env(env)


@pytest.fixture
def lags(monkeypatch, tmp_path):
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "chk"))
    monkeypatch.setattr(supervisor, "running_consumer", lambda paths: 4242)
    monkeypatch.setattr("time.sleep", lambda _s: None)
    seen = []

    def use(values):
        def observe(*_args):
            value = values.pop(0) if len(values) > 1 else values[0]
            seen.append(value)
            return SimpleNamespace(total_lag=lambda: value)
        monkeypatch.setattr(health, "observe", observe)
        return seen
    return use


def test_waits_until_both_sinks_caught_up(lags, tmp_path):
    seen = lags([120, 40, 0])
    assert stack.drain(settings(tmp_path), paths=None, timeout=60) == 0
    assert seen == [120, 40, 0]


def test_gives_up_after_the_timeout_and_says_what_is_lost(lags, tmp_path, caplog):
    lags([7])
    assert stack.drain(settings(tmp_path), paths=None, timeout=0) == 7
    assert "7 records not yet in both sinks" in caplog.text


def test_a_real_kafka_keeps_its_messages_so_nothing_waits(lags, tmp_path):
    seen = lags([500])
    assert stack.drain(settings(tmp_path, embedded=False), paths=None) == 0
    assert seen == []
