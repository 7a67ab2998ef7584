-- marts.product_performance: revenue, units, buyers and repeat-buyer share per product.
-- Line revenue is quantity x unit price - line discount of non-cancelled orders (refunds are per
-- order, not per line, so they are not spread here). A repeat buyer bought the product in at
-- least two different orders; buyers are resolved customers (unmatched guests count in revenue only).
create schema if not exists marts;

create or replace table marts.product_performance as
with lines as (
    select * from staging.order_lines where not is_cancelled
),
per_buyer as (
    select product_id, customer_id, count(distinct order_id) as orders
    from lines
    where customer_id is not null
    group by all
),
buyers as (
    select
        product_id,
        count(*) as buyers,
        count(*) filter (where orders >= 2) as repeat_buyers
    from per_buyer
    group by product_id
),
sales as (
    select
        product_id,
        any_value(sku) as sku,
        any_value(title) as title,
        any_value(category) as category,
        sum(line_revenue)::double as revenue,
        sum(quantity)::bigint as units,
        count(distinct order_id) as orders,
        min(order_date) as first_sold_on,
        max(order_date) as last_sold_on
    from lines
    group by product_id
)
select
    s.product_id,
    s.sku,
    s.title,
    s.category,
    round(s.revenue, 2) as revenue,
    s.revenue / sum(s.revenue) over () as revenue_share,
    s.units,
    s.orders,
    coalesce(b.buyers, 0) as buyers,
    coalesce(b.repeat_buyers, 0) as repeat_buyers,
    coalesce(b.repeat_buyers, 0) / nullif(b.buyers, 0) as repeat_buyer_share,
    round(s.revenue / s.orders, 2) as revenue_per_order,
    s.first_sold_on,
    s.last_sold_on,
    rank() over (order by s.revenue desc) as revenue_rank
from sales s
left join buyers b using (product_id)
order by s.revenue desc, s.product_id;
