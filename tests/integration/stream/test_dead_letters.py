"""Malformed messages become dead-letter rows with a reason; good ones around them still land."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaProducer

from stockpulse.db import connect
from tests.conftest import run_cli
from tests.integration.helpers import lake_table

pytestmark = pytest.mark.slow

GOOD = {"stream_ts": "2026-11-22T03:04:05.000001Z", "date": "2020-01-02", "index": "HSI", "open": 1, "high": 2,
        "low": 0.5, "close": 1.5, "adj_close": 1.5, "volume": 10, "close_usd": 0.195}


def test_malformed_messages_go_to_dead_letter_table(pipeline_env, tmp_path):
    bad = {
        b"not json at all": "not a JSON object with tick fields",
        json.dumps({**GOOD, "close": None}).encode(): "field 'close' is missing or not a valid number",
        json.dumps({k: v for k, v in GOOD.items() if k != "volume"}).encode(): "field 'volume' is missing",
        json.dumps({**GOOD, "close": "abc"}).encode(): "field 'close' is missing or not a valid number",
        json.dumps({**GOOD, "volume": -5}).encode(): "field 'volume' is negative",
        json.dumps({**GOOD, "date": "yesterday"}).encode(): "field 'date' is missing",
        b"\xff\xfe{broken": "not a JSON object with tick fields",
        b"": "empty message",
        # valid JSON the sinks cannot hold: each stopped the job for good, or was stored changed, before
        json.dumps({**GOOD, "index": "H\u0000SI"}).encode(): "field 'index' contains a NUL character",
        json.dumps({**GOOD, "index": "Q" * 300_000}).encode(): "field 'index' is longer than 64 characters",
        json.dumps({**GOOD, "open": 1e15}).encode(): "field 'open' is out of range",
        json.dumps({**GOOD, "close": 1.123456789}).encode(): "field 'close' has more than 8 decimal places",
    }
    producer = KafkaProducer(bootstrap_servers=pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    for i in range(5):
        producer.send(pipeline_env["KAFKA_TOPIC"], key=b"HSI", value=json.dumps({**GOOD, "volume": i}).encode())
    for value in bad:
        producer.send(pipeline_env["KAFKA_TOPIC"], key=b"HSI", value=value)
    producer.flush()
    producer.close()

    pipeline_env["LAKE_PARTITION_BY"] = "index"
    result = run_cli(["consumer/consumer.py", "--once"], pipeline_env)
    assert result.returncode == 0, result.stderr[-3000:]

    with connect(pipeline_env["DATABASE_URL"]) as conn:
        good_rows = conn.execute("SELECT count(*) FROM ticks_raw").fetchone()[0]
        letters = conn.execute("SELECT raw_value, reason FROM ticks_dead_letter").fetchall()
    assert good_rows == 5
    assert len(letters) == len(bad)
    reasons = sorted(reason for _, reason in letters)
    for expected in bad.values():
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    assert any(raw == "not json at all" for raw, _ in letters)
    assert lake_table(Path(pipeline_env["LAKE_PATH"])).num_rows == 5
