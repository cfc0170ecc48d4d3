"""StockPulse: replay stock-index history through Kafka and Spark into Parquet and PostgreSQL.

The entry points at the top of the repository (``producer/producer.py``, ``consumer/consumer.py``,
``streamlit_app.py``, the Airflow DAG) are thin; the logic lives here so it can be tested without
a process boundary.
"""

__version__ = "0.1.0"
