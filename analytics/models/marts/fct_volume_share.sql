-- Each index's share of a year's volume and of its USD trade value, across the indexes in the
-- lake. A year whose total is 0 (early NYA years report no volume) has no shares: NULL, not 0/0.
with yearly as (
    select
        "index",
        cast(year(date) as integer) as year,
        cast(sum(volume) as bigint) as volume,
        cast(sum(trade_value_usd) as decimal(38, 8)) as trade_value_usd
    from {{ ref('fct_index_daily') }}
    group by all
)

select
    "index",
    year,
    volume,
    trade_value_usd,
    cast(volume / nullif(sum(volume) over by_year, 0) as double) as volume_share,
    cast(trade_value_usd / nullif(sum(trade_value_usd) over by_year, 0) as double) as trade_value_usd_share
from yearly
window by_year as (partition by year)
