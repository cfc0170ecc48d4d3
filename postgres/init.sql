-- StockPulse schema. Idempotent: safe to apply on every start (make up, the consumer, Airflow).
-- Column names and types follow stockpulse/schema.py; tests/unit/test_schema.py keeps them in step.

CREATE TABLE IF NOT EXISTS ticks_raw (
    stream_ts        TIMESTAMPTZ    NOT NULL,  -- when the producer emitted the tick (UTC)
    date             DATE           NOT NULL,  -- historical trading date
    index            TEXT           NOT NULL,  -- index symbol, e.g. HSI
    open             NUMERIC(18,8),
    high             NUMERIC(18,8),
    low              NUMERIC(18,8),
    close            NUMERIC(18,8)  NOT NULL,
    adj_close        NUMERIC(18,8),
    volume           BIGINT         NOT NULL,
    close_usd        NUMERIC(18,8),
    trade_value      NUMERIC(38,8)  NOT NULL,  -- close * volume, computed by Spark
    kafka_topic      TEXT           NOT NULL,
    kafka_partition  INTEGER        NOT NULL,
    kafka_offset     BIGINT         NOT NULL,
    kafka_timestamp  TIMESTAMPTZ    NOT NULL,  -- record timestamp: tells apart lives of an in-memory topic
    landed_at        TIMESTAMPTZ    NOT NULL DEFAULT now(),  -- commit time of the micro-batch
    CONSTRAINT ticks_raw_kafka_record UNIQUE (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
);

-- The dashboard's "latest N ticks" query: ORDER BY stream_ts DESC LIMIT N walks this index backwards.
CREATE INDEX IF NOT EXISTS ticks_raw_stream_ts_idx ON ticks_raw (stream_ts);
-- "Rows landed since" (Airflow health and data-quality checks).
CREATE INDEX IF NOT EXISTS ticks_raw_landed_at_idx ON ticks_raw (landed_at);

-- Kafka messages that could not become a tick: the raw value and why, never silently dropped.
CREATE TABLE IF NOT EXISTS ticks_dead_letter (
    kafka_topic      TEXT         NOT NULL,
    kafka_partition  INTEGER      NOT NULL,
    kafka_offset     BIGINT       NOT NULL,
    kafka_timestamp  TIMESTAMPTZ  NOT NULL,
    kafka_key        TEXT,
    raw_value        TEXT,
    reason           TEXT         NOT NULL,
    landed_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT ticks_dead_letter_kafka_record UNIQUE (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
);
