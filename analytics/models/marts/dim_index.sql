-- The indexes the project knows (data/indexInfo.csv): where each trades and in which currency.
select
    "Index" as "index",
    "Region" as region,
    "Exchange" as exchange,
    "Currency" as currency
from {{ ref('indexInfo') }}
