-- marts.revenue_monthly: revenue, orders, AOV and new vs returning customers per calendar month.
-- Revenue is net of refunds (cancelled orders carry 0). Orders count excludes cancelled orders.
-- A customer is "new" in the month of their first non-cancelled order, "returning" afterwards;
-- guest orders that could not be tied to a customer are counted apart (guest_*).
-- Aggregates marts_build.revenue_monthly_state (clv_customer_month_state, _customer_months.sql:
-- one row per customer and month, or per guest order, kept up to date by marts/incremental.py),
-- so the customer counts are row counts; revenue is summed exactly (decimal) before rounding.
create schema if not exists marts;

create or replace table marts.revenue_monthly as
with per_customer as (
    select
        month,
        customer_id,
        case when customer_id is null then 'guest' when month = cohort_month then 'new' else 'returning' end
            as customer_type,
        orders,
        revenue
    from marts_build.revenue_monthly_state
)
select
    month,
    round(sum(revenue)::double, 2) as revenue,
    sum(orders)::bigint as orders,
    round(sum(revenue)::double / sum(orders), 2) as average_order_value,
    count(customer_id) as customers,
    count(*) filter (where customer_type = 'new') as new_customers,
    count(*) filter (where customer_type = 'returning') as returning_customers,
    round(coalesce(sum(revenue) filter (where customer_type = 'new'), 0)::double, 2) as new_customer_revenue,
    round(coalesce(sum(revenue) filter (where customer_type = 'returning'), 0)::double, 2) as returning_customer_revenue,
    coalesce(sum(orders) filter (where customer_type = 'guest'), 0)::bigint as guest_orders,
    round(coalesce(sum(revenue) filter (where customer_type = 'guest'), 0)::double, 2) as guest_revenue,
    coalesce(sum(revenue) filter (where customer_type = 'returning'), 0)::double / sum(revenue)::double
        as returning_revenue_share
from per_customer
group by month
order by month;
