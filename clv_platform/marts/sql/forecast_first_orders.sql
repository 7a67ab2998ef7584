-- first purchase day of every buyer up to $cutoff and that day's net spend (forecast.revenue.first_orders
-- in sql, so the nightly forecast never loads every order): never-cancelled orders, an untied guest
-- order is its own buyer, several orders of one day are one purchase day.
with daily as (
    select coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date, sum(net_revenue::double) as amount
    from staging.orders
    where not is_cancelled and order_date <= $cutoff
    group by all
)
-- one purchase day per (customer, day) above, so the first is unique: a grouped arg_min instead of
-- a window sorting every customer's days (same rows; 1.2-1.4 s against 1.3-1.8 at 1M customers)
select customer_id, min(order_date)::timestamp as first_date, arg_min(amount, order_date) as first_value
from daily
group by customer_id
order by customer_id
