-- marts.seasonality: orders and revenue by weekday (period_type 'weekday', 1 = Monday) and by
-- calendar month (period_type 'month', 1 = January). Each period is compared per calendar day it
-- covers in the data's date range, so a month seen twice or a partial first year does not skew
-- the index: revenue_index = revenue per day in the period / revenue per day overall (1 = average).
create schema if not exists marts;

create or replace table marts.seasonality as
with orders as (
    select order_date, net_revenue::double as net_revenue
    from staging.orders
    where not is_cancelled
),
calendar as (
    select unnest(generate_series(min(order_date), max(order_date), interval 1 day))::date as day
    from orders
),
days as (
    select 'weekday' as period_type, isodow(day) as period, count(*) as days from calendar group by all
    union all
    select 'month', month(day), count(*) from calendar group by all
),
sales as (
    select 'weekday' as period_type, isodow(order_date) as period, count(*) as orders, sum(net_revenue) as revenue
    from orders group by all
    union all
    select 'month', month(order_date), count(*), sum(net_revenue)
    from orders group by all
),
overall as (
    select sum(net_revenue) / (select count(*) from calendar) as revenue_per_day,
           count(*) / (select count(*) from calendar) as orders_per_day
    from orders
)
select
    d.period_type,
    d.period,
    case d.period_type
        when 'weekday' then dayname(date '2024-01-07' + d.period::integer)
        else monthname(make_date(2024, d.period::integer, 1))
    end as period_name,
    d.days,
    coalesce(s.orders, 0) as orders,
    round(coalesce(s.revenue, 0), 2) as revenue,
    coalesce(s.revenue, 0) / sum(coalesce(s.revenue, 0)) over (partition by d.period_type) as revenue_share,
    coalesce(s.orders, 0) / d.days as orders_per_day,
    round(coalesce(s.revenue, 0) / d.days, 2) as revenue_per_day,
    coalesce(s.revenue, 0) / d.days / o.revenue_per_day as revenue_index,
    coalesce(s.orders, 0) / d.days / o.orders_per_day as orders_index
from days d
left join sales s using (period_type, period)
cross join overall o
order by d.period_type desc, d.period;
