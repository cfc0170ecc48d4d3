"""The data-quality check against a real PostgreSQL: counts, samples, and the moving window."""

from __future__ import annotations

from datetime import datetime

from stockpulse.db import connect
from stockpulse.ops import quality

INSERT = """
INSERT INTO ticks_raw (stream_ts, date, index, open, high, low, close, volume, trade_value,
                       kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
VALUES (now(), '2021-05-28', %(index)s, %(open)s, %(high)s, %(low)s, %(close)s, %(volume)s, %(trade_value)s,
        't', 0, %(offset)s, now())
"""


def insert(url: str, rows: list[dict]) -> None:
    with connect(url) as conn:
        for offset, row in enumerate(rows, start=int(conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0])):
            base = {"index": "HSI", "open": "10.5", "high": "11", "low": "10", "close": "10.25", "volume": 3,
                    "trade_value": "30.75", "offset": offset}
            conn.execute(INSERT, {**base, **row})


def test_violations_are_counted_sampled_and_the_window_moves_on(database_url):
    insert(database_url, [
        {},                                                      # good
        {"trade_value": "30.76"},                                # off by a cent: exact NUMERIC equality
        {"low": "10.6"},                                         # low above open and close
        {"close": "11.5", "trade_value": "34.5"},                # close above high
        {"open": None, "high": None, "low": None},               # nulls in optional prices pass
        {"volume": -3, "trade_value": "-30.75"},                 # another writer broke a value rule
    ])
    result = quality.check(database_url, "run-1", settle=0)
    assert result["rows_checked"] == 6
    assert result["violations"] == {"trade_value_not_close_times_volume": 1, "low_above_open": 1,
                                    "low_above_close": 1, "open_above_high": 0, "close_above_high": 1,
                                    "close_is_not_positive": 0, "volume_is_negative": 1}
    assert len(result["samples"]) == 4 and any("low_above_open,low_above_close" in s for s in result["samples"])
    assert quality.failures(result["violations"])

    again = quality.check(database_url, "run-2", settle=0)
    assert again["rows_checked"] == 0 and not quality.failures(again["violations"])
    assert quality.last_checked_to(database_url).isoformat() == again["checked_to"]


def test_a_batch_still_being_written_holds_the_window_back(database_url):
    """landed_at is the writer's transaction start: a long COPY commits rows older than rows that
    are already visible. The window must end before it, or those rows are never checked."""
    insert(database_url, [{}])
    with connect(database_url) as writing:  # the consumer, mid-batch
        writing.execute(INSERT, {"index": "HSI", "open": "10", "high": "11", "low": "10.6", "close": "10",
                                 "volume": 1, "trade_value": "10", "offset": 1000})  # low above open/close
        batch_started = writing.execute("SELECT now()").fetchone()[0]
        insert(database_url, [{}, {}])  # later batches commit first, with newer landed_at
        first = quality.check(database_url, "run-1", settle=0)
        assert first["rows_checked"] == 1
        assert datetime.fromisoformat(first["checked_to"]) < batch_started
        writing.commit()
    second = quality.check(database_url, "run-2", settle=0)
    assert second["rows_checked"] == 3 and second["violations"]["low_above_open"] == 1
