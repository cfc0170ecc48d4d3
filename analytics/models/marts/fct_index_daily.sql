-- One row per (index, trading date), with what the dashboard charts: the daily return, a rolling
-- 20-day volatility (annualised with sqrt(252) trading days) and the close rebased to 100 at the
-- index's first date, so indexes with very different levels share one axis.
with daily as (
    select
        "index",
        date,
        close,
        volume,
        trade_value,
        close_usd,
        cast(close_usd * volume as decimal(38, 8)) as trade_value_usd,
        cast(close / lag(close) over by_date - 1 as double) as daily_return,
        cast(close / first_value(close) over by_date * 100 as double) as rebased_close
    from {{ ref('stg_ticks') }}
    window by_date as (partition by "index" order by date)
),

rolling as (
    select
        *,
        stddev_samp(daily_return) over last_20 * sqrt(252) as volatility,
        count(daily_return) over last_20 as returns_in_window
    from daily
    window last_20 as (partition by "index" order by date rows between 19 preceding and current row)
)

select
    rolling."index",
    rolling.date,
    rolling.close,
    rolling.daily_return,
    -- a full window only: 19 returns would be a different statistic, not an early estimate
    case when rolling.returns_in_window = 20 then rolling.volatility end as volatility_20d,
    rolling.rebased_close,
    rolling.volume,
    rolling.trade_value,
    rolling.close_usd,
    rolling.trade_value_usd,
    dim_index.region,
    dim_index.currency
from rolling
left join {{ ref('dim_index') }} as dim_index on dim_index."index" = rolling."index"
