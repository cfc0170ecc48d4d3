"""The consumer's two sinks: the Parquet lake and PostgreSQL."""
