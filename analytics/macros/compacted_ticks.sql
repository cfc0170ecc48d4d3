{% macro compacted_ticks() -%}
{#- Every Parquet file of the compacted zone as one relation. The compaction writes
    index=<INDEX>/year=<YYYY>/part-<hash>.parquet by default; `**` also reads the layouts other
    LAKE_PARTITION_BY values give (year=... only, index=... only, flat), and only the files'
    `date` is used for the year. The zone's _compaction/ log holds .json and .pending files and a
    file being written is a hidden .tmp, so none of them match *.parquet.
    hive_types_autocast = false: partition values stay text, so an index named like a number
    ('000123') is not read as one. DuckDB decodes Spark's escapes in directory names itself
    ('index=A%2FB' reads as 'A/B'). Spark writes s3a:// URIs; DuckDB's httpfs wants s3://. -#}
{%- set root = env_var('LAKE_COMPACTED_PATH', '../lake/compacted').rstrip('/') | replace('s3a://', 's3://') -%}
read_parquet(
    '{{ root | replace("'", "''") }}/**/*.parquet',
    hive_partitioning = true,
    hive_types_autocast = false
)
{%- endmacro %}
