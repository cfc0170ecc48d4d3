"""``SINK_MODE=shared``: one query reads and parses the topic once and writes both sinks.

The profile in ``docs/performance.md`` found the job's time in the JVM, and with a query per sink
every record is fetched, decoded and checked twice. Here ``foreachBatch`` hands one parsed
micro-batch to both sinks, each still exactly-once on its own terms:

- the lake through Spark's own file sink (``FileStreamSink``), called with the query's batch id:
  it skips a batch id its ``_spark_metadata`` log already holds and logs the files of a new one
  after writing them, which is exactly what ``format("parquet")`` does in the separate mode. The
  lake's layout and log are therefore the same in both modes, and every reader and the tidy-up
  in :mod:`stockpulse.stream.lake` work unchanged;
- PostgreSQL through :class:`~stockpulse.stream.sinks.postgres.PostgresSink`, keyed on the Kafka
  record, so a batch replayed after a crash changes nothing.

The lake is written first: a crash between the two replays the batch, the lake skips it by id and
PostgreSQL receives it. What the mode gives up is independence: while PostgreSQL is down the lake
waits too, and both sinks share one checkpoint (``<CHECKPOINT_DIR>/shared``).

``FileStreamSink`` is Spark's internal class (``org.apache.spark.sql.execution.streaming.sinks``
since Spark 4.1); :func:`file_stream_sink` is the one place that names it.
"""

from __future__ import annotations

import logging
import time

from stockpulse.stream.transform import valid_ticks

logger = logging.getLogger(__name__)

FILE_STREAM_SINK = "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink"


def file_stream_sink(spark, path: str, partition_by: tuple[str, ...]):
    """Spark's Parquet file sink for ``path`` (a JVM object with ``addBatch(batchId, df)``)."""
    from py4j.java_gateway import java_import

    jvm = spark._jvm
    java_import(jvm, FILE_STREAM_SINK)
    utils = jvm.org.apache.spark.api.python.PythonUtils
    parquet = jvm.org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat()
    return jvm.FileStreamSink(spark._jsparkSession, path, parquet, utils.toSeq(list(partition_by)),
                              utils.toScalaMap({}))


class SharedSink:
    """Callable for ``foreachBatch``: the batch's valid ticks to the lake, then every record to PostgreSQL."""

    def __init__(self, lake_path: str, partition_by: tuple[str, ...], postgres) -> None:
        self.lake_path = lake_path
        self.partition_by = partition_by
        self.postgres = postgres
        self._lake = None

    def __call__(self, batch_df, batch_id: int) -> None:
        if self._lake is None:  # built on first use: it reads the lake's log, from the batch's session
            self._lake = file_stream_sink(batch_df.sparkSession, self.lake_path, self.partition_by)
        started = time.monotonic()
        # Both sinks read the batch: without caching, Kafka would be read and parsed twice.
        batch_df.persist()
        try:
            self._lake.addBatch(batch_id, valid_ticks(batch_df)._jdf)
            lake_done = time.monotonic()
            self.postgres(batch_df, batch_id)
        finally:
            batch_df.unpersist()
        logger.info("shared batch %d: lake %.2f s, PostgreSQL %.2f s", batch_id, lake_done - started,
                    time.monotonic() - lake_done)
