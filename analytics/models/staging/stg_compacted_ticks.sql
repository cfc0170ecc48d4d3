-- Every row of the compacted zone as it landed, typed as the tick contract says
-- (stockpulse/schema.py, STORED_FIELDS). A producer that replayed history puts the same
-- (index, date) here twice; stg_ticks keeps one. The trade_value test runs here, on every row,
-- so a bad duplicate cannot hide behind the deduplication.
select
    cast("index" as varchar) as "index",
    stream_ts,  -- as stored: UTC instants (TIMESTAMPTZ); a cast to TIMESTAMP would apply the session time zone
    cast(date as date) as date,
    cast(open as decimal(18, 8)) as open,
    cast(high as decimal(18, 8)) as high,
    cast(low as decimal(18, 8)) as low,
    cast(close as decimal(18, 8)) as close,
    cast(adj_close as decimal(18, 8)) as adj_close,
    cast(volume as bigint) as volume,
    cast(close_usd as decimal(18, 8)) as close_usd,
    cast(trade_value as decimal(38, 8)) as trade_value,
    kafka_topic,
    cast(kafka_partition as integer) as kafka_partition,
    cast(kafka_offset as bigint) as kafka_offset,
    kafka_timestamp
from {{ compacted_ticks() }}
