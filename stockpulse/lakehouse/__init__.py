"""The lake's later layers: compaction of the raw zone, dbt models on DuckDB, the object store."""
