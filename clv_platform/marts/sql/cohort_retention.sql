-- marts.cohort_retention: acquisition-month cohorts by months since their first order.
-- A customer is active in a month when they placed a non-cancelled order in it; month 0 is the
-- acquisition month, so its retention share is 1 by construction. Every month from acquisition to
-- the last month with data is present, with 0 active customers where nobody bought.
-- Aggregates marts_build.cohort_retention_state (clv_customer_month_state, _customer_months.sql:
-- one row per customer and month they bought in, kept up to date by marts/incremental.py);
-- revenue is summed exactly (decimal) before rounding.
create schema if not exists marts;

create or replace table marts.cohort_retention as
with state as (
    select * from marts_build.cohort_retention_state where customer_id is not null
),
cohort_sizes as (
    select cohort_month, count(*) as cohort_customers from state where month = cohort_month group by cohort_month
),
grid as (
    select
        s.cohort_month,
        s.cohort_customers,
        m.month_offset
    from cohort_sizes s
    cross join lateral (
        select unnest(range(0, datediff('month', s.cohort_month, (select max(month) from state)) + 1)) as month_offset
    ) m
),
activity as (
    select
        cohort_month,
        datediff('month', cohort_month, month) as month_offset,
        count(*) as active_customers,
        sum(orders)::bigint as orders,
        sum(revenue) as revenue
    from state
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
    round(coalesce(a.revenue, 0)::double, 2) as revenue,
    round((sum(coalesce(a.revenue, 0)) over (
        partition by g.cohort_month order by g.month_offset rows between unbounded preceding and current row
    ))::double / g.cohort_customers, 2) as cumulative_revenue_per_customer
from grid g
left join activity a using (cohort_month, month_offset)
order by g.cohort_month, g.month_offset;
