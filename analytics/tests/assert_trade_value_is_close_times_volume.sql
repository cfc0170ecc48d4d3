-- trade_value = close * volume, exactly, on every row as it landed (duplicates included). Prices
-- are DECIMAL(18,8) end to end, so any difference is a bug upstream, never rounding.
select "index", date, close, volume, trade_value, kafka_topic, kafka_partition, kafka_offset
from {{ ref('stg_compacted_ticks') }}
where trade_value is distinct from close * volume
