"""The streaming stage: the Spark job (:mod:`job`) reads Kafka (Spark's connector, or the project's
reader in :mod:`kafka_source`), turns records into ticks (:mod:`transform`) and writes the Parquet
lake (:mod:`lake` keeps it exact for non-Spark readers) and PostgreSQL (:mod:`sinks.postgres`).
:mod:`job_files` holds the lock and heartbeat the job shows the outside world; :mod:`cli` is what
``consumer/consumer.py`` runs."""
