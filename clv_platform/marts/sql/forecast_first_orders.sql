-- first purchase day of every buyer up to $cutoff and that day's net spend (forecast.revenue.first_orders
-- in sql, so the nightly forecast never loads every order): never-cancelled orders, an untied guest
-- order is its own buyer, several orders of one day are one purchase day.
with daily as (
    select coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date, sum(net_revenue::double) as amount
    from staging.orders
    where not is_cancelled and order_date <= $cutoff
    group by all
)
select customer_id, order_date::timestamp as first_date, amount as first_value
from daily
qualify row_number() over (partition by customer_id order by order_date) = 1
order by customer_id
