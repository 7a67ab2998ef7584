-- marts.cohort_retention: acquisition-month cohorts by months since their first order.
-- A customer is active in a month when they placed a non-cancelled order in it; month 0 is the
-- acquisition month, so its retention share is 1 by construction. Every month from acquisition to
-- the last month with data is present, with 0 active customers where nobody bought.
create schema if not exists marts;

create or replace table marts.cohort_retention as
with orders as (
    select customer_id, date_trunc('month', order_date)::date as month, net_revenue::double as net_revenue
    from staging.orders
    where customer_id is not null and not is_cancelled
),
cohorts as (
    select customer_id, min(month) as cohort_month from orders group by customer_id
),
cohort_sizes as (
    select cohort_month, count(*) as cohort_customers from cohorts group by cohort_month
),
grid as (
    select
        s.cohort_month,
        s.cohort_customers,
        m.month_offset
    from cohort_sizes s
    cross join lateral (
        select unnest(range(0, datediff('month', s.cohort_month, (select max(month) from orders)) + 1)) as month_offset
    ) m
),
activity as (
    select
        c.cohort_month,
        datediff('month', c.cohort_month, o.month) as month_offset,
        count(distinct o.customer_id) as active_customers,
        count(*) as orders,
        sum(o.net_revenue) as revenue
    from orders o
    join cohorts c using (customer_id)
    group by all
)
select
    g.cohort_month,
    g.month_offset as months_since_first_order,
    (g.cohort_month + to_months(g.month_offset::integer))::date as activity_month,
    g.cohort_customers,
    coalesce(a.active_customers, 0) as active_customers,
    coalesce(a.active_customers, 0) / g.cohort_customers as retention_share,
    coalesce(a.orders, 0) as orders,
    round(coalesce(a.revenue, 0), 2) as revenue,
    round(sum(coalesce(a.revenue, 0)) over (
        partition by g.cohort_month order by g.month_offset rows between unbounded preceding and current row
    ) / g.cohort_customers, 2) as cumulative_revenue_per_customer
from grid g
left join activity a using (cohort_month, month_offset)
order by g.cohort_month, g.month_offset;
