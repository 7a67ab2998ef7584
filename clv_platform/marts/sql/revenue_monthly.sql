-- marts.revenue_monthly: revenue, orders, AOV and new vs returning customers per calendar month.
-- Revenue is net of refunds (cancelled orders carry 0). Orders count excludes cancelled orders.
-- A customer is "new" in the month of their first non-cancelled order, "returning" afterwards;
-- guest orders that could not be tied to a customer are counted apart (guest_*).
create schema if not exists marts;

create or replace table marts.revenue_monthly as
with orders as (
    select date_trunc('month', order_date)::date as month, customer_id, net_revenue::double as net_revenue
    from staging.orders
    where not is_cancelled
),
first_orders as (
    select customer_id, min(month) as first_month
    from orders
    where customer_id is not null
    group by customer_id
),
per_customer as (
    -- one row per month and customer (a guest month is one row with a null id): a customer is new
    -- or returning for a whole month, so the customer counts below are row counts, no distinct
    select o.month, o.customer_id,
        case when o.customer_id is null then 'guest' when o.month = f.first_month then 'new' else 'returning' end
            as customer_type,
        count(*) as orders, sum(o.net_revenue) as revenue
    from orders o
    left join first_orders f using (customer_id)
    group by all
)
select
    month,
    round(sum(revenue), 2) as revenue,
    sum(orders)::bigint as orders,
    round(sum(revenue) / sum(orders), 2) as average_order_value,
    count(customer_id) as customers,
    count(*) filter (where customer_type = 'new') as new_customers,
    count(*) filter (where customer_type = 'returning') as returning_customers,
    round(coalesce(sum(revenue) filter (where customer_type = 'new'), 0), 2) as new_customer_revenue,
    round(coalesce(sum(revenue) filter (where customer_type = 'returning'), 0), 2) as returning_customer_revenue,
    coalesce(sum(orders) filter (where customer_type = 'guest'), 0)::bigint as guest_orders,
    round(coalesce(sum(revenue) filter (where customer_type = 'guest'), 0), 2) as guest_revenue,
    coalesce(sum(revenue) filter (where customer_type = 'returning'), 0) / sum(revenue) as returning_revenue_share
from per_customer
group by month
order by month;
