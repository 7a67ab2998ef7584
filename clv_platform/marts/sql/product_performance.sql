-- marts.product_performance: revenue, units, buyers and repeat-buyer share per product.
-- Line revenue is quantity x unit price - line discount of non-cancelled orders (refunds are per
-- order, not per line, so they are not spread here). A repeat buyer bought the product in at
-- least two different orders; buyers are resolved customers (unmatched guests count in revenue only).
-- The measures come from clv_line_sales (_line_sales.sql), shared with category_performance, over
-- marts_build.product_performance_state (per product and buyer, kept up to date by
-- marts/incremental.py). sku, title and category: the largest value seen on the product's lines.
create schema if not exists marts;

create or replace table marts.product_performance as
with products as (
    select
        grain as product_id,
        max(sku) as sku,
        max(title) as title,
        max(category) as category,
        min(first_sold_on) as first_sold_on,
        max(last_sold_on) as last_sold_on
    from marts_build.product_performance_state
    group by grain
)
select
    p.product_id,
    p.sku,
    p.title,
    p.category,
    m.* exclude (grain, revenue_exact),
    p.first_sold_on,
    p.last_sold_on,
    rank() over (order by m.revenue_exact desc) as revenue_rank
from clv_line_sales('marts_build.product_performance_state') m
join products p on p.product_id is not distinct from m.grain
order by m.revenue_exact desc, p.product_id;
