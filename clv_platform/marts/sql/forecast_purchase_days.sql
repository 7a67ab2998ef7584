-- per calendar day up to $cutoff: buyers whose first purchase day it is and repeat purchase days
-- (forecast.revenue.purchase_days in sql, the seasonal index's only input from the orders): never-cancelled
-- orders, an untied guest order is its own buyer, several orders of one day are one purchase day.
with days as (
    select distinct coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date
    from staging.orders
    where not is_cancelled and order_date <= $cutoff
),
marked as (
    select order_date, order_date = min(order_date) over (partition by customer_id) as is_first
    from days
)
select order_date::timestamp as day, count(*) filter (where is_first) as first_buyers,
       count(*) filter (where not is_first) as repeat_days
from marked
group by all
order by day
