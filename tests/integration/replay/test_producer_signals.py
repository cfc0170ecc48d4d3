"""Ctrl-C (SIGINT) and `make down` (SIGTERM) stop the producer cleanly against a real broker.

Clean means: exit code 130, no traceback, a summary line, and the summary's row count equal to
what the topic holds (everything sent was flushed, and no tick was cut in half).
"""

from __future__ import annotations

import signal

import pytest

from tests.integration.helpers import csv_slice, produced_rows, records_in_topic, start_slow_producer, wait_for_records


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_mid_replay_flushes_and_summarises(pipeline_env, broker, topic, tmp_path, stop_signal):
    csv = csv_slice(tmp_path / "slice.csv", 3000)
    producer = start_slow_producer(csv, pipeline_env, capture=True)
    try:
        wait_for_records(broker, topic, 100, producer)
        producer.send_signal(stop_signal)
        _, stderr = producer.communicate(timeout=60)
    finally:
        if producer.poll() is None:
            producer.kill()

    assert producer.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith("interrupted after"), summary
    sent = produced_rows(summary)
    assert 100 <= sent < 3000, "the signal should have landed mid-replay"
    assert records_in_topic(broker, topic) == sent
