-- One row per (index, date). Each Kafka message lands once, but a replayed history sends the same
-- trading day again as a new message: the latest send wins (kafka_timestamp, then kafka_offset;
-- partition and topic only make a tie deterministic).
select
    "index",
    date,
    cast(year(date) as integer) as year,
    stream_ts,
    open,
    high,
    low,
    close,
    adj_close,
    volume,
    close_usd,
    trade_value,
    kafka_topic,
    kafka_partition,
    kafka_offset,
    kafka_timestamp
from {{ ref('stg_compacted_ticks') }}
qualify row_number() over (
    partition by "index", date
    order by kafka_timestamp desc, kafka_offset desc, kafka_partition desc, kafka_topic desc
) = 1
