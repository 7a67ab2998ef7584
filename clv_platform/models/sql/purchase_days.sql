-- per calendar day up to $cutoff: buyers whose first purchase day it is and repeat purchase days
-- (models.seasonality.purchase_days in sql, the seasonal index's only input from the orders): never-cancelled
-- orders, an untied guest order is its own buyer, several orders of one day are one purchase day.
-- Repeat days of a day = its purchase days - its first buyers: two group-bys and no window over the
-- purchase days (300k store, 1.25M orders: 1.9 s against 3.9 s with min() over (partition by customer)).
with days as (
    select coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date
    from staging.orders
    where not is_cancelled and order_date <= $cutoff
    group by all
),
cohorts as (
    select first_day as day, count(*) as first_buyers
    from (select min(order_date) as first_day from days group by customer_id)
    group by all
),
buyers as (
    select order_date as day, count(*) as buyers from days group by all
)
select b.day::timestamp as day, coalesce(c.first_buyers, 0) as first_buyers,
       b.buyers - coalesce(c.first_buyers, 0) as repeat_days
from buyers as b
left join cohorts as c using (day)
order by day
