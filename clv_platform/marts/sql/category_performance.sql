-- marts.category_performance: the product_performance measures per product category.
-- A repeat buyer of a category bought from it in at least two different orders (any products).
create schema if not exists marts;

create or replace table marts.category_performance as
with lines as (
    select *, coalesce(category, 'uncategorized') as category_name
    from staging.order_lines
    where not is_cancelled
),
per_buyer as (
    select category_name, customer_id, count(distinct order_id) as orders
    from lines
    where customer_id is not null
    group by all
),
buyers as (
    select
        category_name,
        count(*) as buyers,
        count(*) filter (where orders >= 2) as repeat_buyers
    from per_buyer
    group by category_name
),
sales as (
    select
        category_name,
        count(distinct product_id) as products,
        sum(line_revenue)::double as revenue,
        sum(quantity)::bigint as units,
        count(distinct order_id) as orders
    from lines
    group by category_name
)
select
    s.category_name as category,
    s.products,
    round(s.revenue, 2) as revenue,
    s.revenue / sum(s.revenue) over () as revenue_share,
    s.units,
    s.orders,
    coalesce(b.buyers, 0) as buyers,
    coalesce(b.repeat_buyers, 0) as repeat_buyers,
    coalesce(b.repeat_buyers, 0) / nullif(b.buyers, 0) as repeat_buyer_share,
    round(s.revenue / s.orders, 2) as revenue_per_order
from sales s
left join buyers b using (category_name)
order by s.revenue desc, s.category_name;
