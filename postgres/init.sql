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
    kafka_timestamp  TIMESTAMPTZ    NOT NULL,  -- record timestamp: tells apart lives of a recreated topic
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
-- The dashboard's pipeline panel: the newest dead letters and their reasons.
CREATE INDEX IF NOT EXISTS ticks_dead_letter_landed_at_idx ON ticks_dead_letter (landed_at);

-- == Airflow: where the data-quality checks stand (stockpulse/ops/quality.py) =================
-- One row per check; the next check starts at the previous one's checked_to.
CREATE TABLE IF NOT EXISTS stockpulse_quality_checks (
    id            BIGSERIAL    PRIMARY KEY,
    checked_from  TIMESTAMPTZ,                       -- exclusive; NULL: from the first row
    checked_to    TIMESTAMPTZ  NOT NULL,             -- inclusive; the next check starts here
    rows_checked  BIGINT       NOT NULL,
    violations    JSONB        NOT NULL,             -- check name -> violating rows
    run_id        TEXT,                              -- the Airflow run that checked
    checked_at    TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- == Lakehouse jobs: when compaction and dbt last ran (stockpulse/ops/job_runs.py) ==========
-- One row per run of a batch job; the dashboard's pipeline panel shows the latest of each.
CREATE TABLE IF NOT EXISTS stockpulse_job_runs (
    id           BIGSERIAL    PRIMARY KEY,
    job          TEXT         NOT NULL,              -- 'lake_compaction' | 'dbt_build'
    started_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,                        -- NULL while running (or killed)
    status       TEXT         NOT NULL,              -- 'running' | 'success' | 'failed'
    summary      JSONB        NOT NULL DEFAULT '{}', -- what the run did, e.g. files and rows moved
    error        TEXT                                -- one line, when failed
);
CREATE INDEX IF NOT EXISTS stockpulse_job_runs_job_idx ON stockpulse_job_runs (job, started_at);

-- == Dashboard: read-only role (issue 4) ======================================================
-- The dashboard connects as stockpulse_reader, which may SELECT and nothing else, so a bug in the
-- page cannot change data. Idempotent, and safe on a managed server where CREATE ROLE is not
-- allowed: there it only raises a NOTICE (create a read-only role yourself and point
-- DASHBOARD_DATABASE_URL at it). The embedded server's set-up creates it first, with a password
-- kept in <state>/secrets/pgpass, so there this block only grants.
-- A role that already exists (an older init.sql, or made by hand) is made read-only by default
-- too; the check first keeps repeated runs from rewriting the role's settings.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpulse_reader') THEN
        BEGIN
            CREATE ROLE stockpulse_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database of this cluster created it at the same moment
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'stockpulse: cannot create role stockpulse_reader (%), the dashboard needs a read-only role', SQLERRM;
                RETURN;
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpulse_reader'
                   AND 'default_transaction_read_only=on' = ANY (coalesce(rolconfig, '{}'))) THEN
        BEGIN
            ALTER ROLE stockpulse_reader SET default_transaction_read_only = on;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'stockpulse: cannot make stockpulse_reader read-only by default (%), the dashboard still opens its sessions read-only', SQLERRM;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO stockpulse_reader', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO stockpulse_reader', current_schema());
    GRANT SELECT ON ticks_raw, ticks_dead_letter, stockpulse_job_runs TO stockpulse_reader;
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO stockpulse_reader', current_schema());
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'stockpulse: cannot grant SELECT to stockpulse_reader (%)', SQLERRM;
END
$$;
