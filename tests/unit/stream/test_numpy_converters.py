"""pyspark's numpy converters wrapped so a job's start does not import pandas."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from stockpulse.stream.numpy_converters import WhenNumpyLoaded, defer_numpy_converters

ROOT = Path(__file__).resolve().parents[3]


class _Recording:
    def __init__(self):
        self.asked = []

    def can_convert(self, value):
        self.asked.append(value)
        return True

    def convert(self, value, gateway_client):
        return ("converted", value)


def test_the_inner_converter_is_asked_only_once_numpy_is_imported(monkeypatch):
    inner = _Recording()
    wrapped = WhenNumpyLoaded(inner)
    monkeypatch.delitem(sys.modules, "numpy", raising=False)
    assert wrapped.can_convert(1) is False and inner.asked == []
    monkeypatch.setitem(sys.modules, "numpy", object())
    assert wrapped.can_convert(2) is True and inner.asked == [2]
    assert wrapped.convert(2, None) == ("converted", 2)


def test_wrapping_twice_wraps_nothing_more():
    from py4j import protocol

    defer_numpy_converters()
    assert defer_numpy_converters() == 0
    assert sum(isinstance(c, WhenNumpyLoaded) for c in protocol.INPUT_CONVERTER) == 2


def test_a_job_builds_its_columns_and_a_batch_without_importing_pandas():
    """The job's session, the tick columns and the PostgreSQL writer's CSV columns, then a batch
    through both, in a fresh interpreter: pandas stays out (1.4-2.7 s of start-up otherwise).
    A numpy value still reaches the JVM once numpy is imported."""
    script = textwrap.dedent("""
        import sys
        from stockpulse.config import ConsumerSettings
        from stockpulse.stream import job
        from stockpulse.stream.sinks import jvm_copy
        from stockpulse.stream.transform import tick_columns, to_ticks

        spark = job.build_session(ConsumerSettings.from_env(), master="local[1]")
        records = spark.range(1).selectExpr(
            "CAST('HSI' AS BINARY) AS key", "CAST('not json' AS BINARY) AS value", "'t' AS topic",
            "0 AS partition", "CAST(7 AS BIGINT) AS offset", "current_timestamp() AS timestamp")
        lines = jvm_copy.encoded(to_ticks(records, tick_columns()), jvm_copy.encoding()).collect()
        print("pandas" in sys.modules, lines[0]["dead"], lines[0]["line"].split(",")[2])
        import numpy
        from pyspark.sql import functions as F
        print(spark.range(3).where(F.col("id") == numpy.int64(1)).count())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SPARK_LOG_LEVEL": "ERROR"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["False True 7", "1"]
