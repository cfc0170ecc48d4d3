"""What the Airflow DAG ``stockpulse_pipeline`` does, kept out of the DAG file so it is testable.

Each module pairs pure decision functions (tested with plain values) with thin I/O edges:
:mod:`preflight` (are the services there), :mod:`checkpoints` (what Spark has committed),
:mod:`supervisor` (start, restart or leave the consumer; bounded catch-up), :mod:`health` (lag and
freshness verdict), :mod:`quality` (data checks on rows landed since the last run) and
:mod:`tasks` (the task bodies the DAG calls).
"""
