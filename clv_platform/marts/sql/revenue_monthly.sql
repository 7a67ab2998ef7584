-- marts.revenue_monthly: revenue, orders, AOV and new vs returning customers per calendar month.
-- Revenue is net of refunds (cancelled orders carry 0). Orders count excludes cancelled orders.
-- A customer is "new" in the month of their first non-cancelled order, "returning" afterwards;
-- guest orders that could not be tied to a customer are counted apart (guest_*).
create schema if not exists marts;

create or replace table marts.revenue_monthly as
with orders as (
    select
        date_trunc('month', order_date)::date as month,
        customer_id,
        net_revenue::double as net_revenue,
        is_cancelled
    from staging.orders
),
first_orders as (
    select customer_id, date_trunc('month', min(order_date))::date as first_month
    from staging.orders
    where customer_id is not null and not is_cancelled
    group by customer_id
),
labelled as (
    select
        o.*,
        case
            when o.customer_id is null then 'guest'
            when o.month = f.first_month then 'new'
            else 'returning'
        end as customer_type
    from orders o
    left join first_orders f using (customer_id)
    where not o.is_cancelled
)
select
    month,
    round(sum(net_revenue), 2) as revenue,
    count(*) as orders,
    round(sum(net_revenue) / count(*), 2) as average_order_value,
    count(distinct customer_id) as customers,
    count(distinct customer_id) filter (where customer_type = 'new') as new_customers,
    count(distinct customer_id) filter (where customer_type = 'returning') as returning_customers,
    round(coalesce(sum(net_revenue) filter (where customer_type = 'new'), 0), 2) as new_customer_revenue,
    round(coalesce(sum(net_revenue) filter (where customer_type = 'returning'), 0), 2) as returning_customer_revenue,
    count(*) filter (where customer_type = 'guest') as guest_orders,
    round(coalesce(sum(net_revenue) filter (where customer_type = 'guest'), 0), 2) as guest_revenue,
    coalesce(sum(net_revenue) filter (where customer_type = 'returning'), 0) / sum(net_revenue) as returning_revenue_share
from labelled
group by month
order by month;
