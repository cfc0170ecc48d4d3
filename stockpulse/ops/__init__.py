"""Operations: what starts, watches and resets the pipeline, used by ``make up`` and the Airflow DAG.

:mod:`services` starts the embedded PostgreSQL, Kafka, Airflow and dashboard and detached jobs;
:mod:`stack` is the ``make up``/``make down`` CLI over them. The DAG's work, kept out of the DAG file
so it is testable: :mod:`preflight` (are the services there), :mod:`checkpoints` (what Spark has
committed), :mod:`supervisor` (start, restart or leave the consumer; bounded catch-up),
:mod:`health` (lag and freshness verdict), :mod:`quality` (data checks on rows landed since the last
run) and :mod:`tasks` (the task bodies the DAG calls). :mod:`outputs` resets the lake and checkpoints.
"""
