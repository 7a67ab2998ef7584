-- marts.product_performance: revenue, units, buyers and repeat-buyer share per product.
-- Line revenue is quantity x unit price - line discount of non-cancelled orders (refunds are per
-- order, not per line, so they are not spread here). A repeat buyer bought the product in at
-- least two different orders; buyers are resolved customers (unmatched guests count in revenue only).
-- The measures come from clv_line_sales (_line_sales.sql), shared with category_performance.
create schema if not exists marts;

create or replace temp view _product_lines as
select *, product_id as grain from staging.order_lines where not is_cancelled;

create or replace table marts.product_performance as
with products as (
    select
        product_id,
        any_value(sku) as sku,
        any_value(title) as title,
        any_value(category) as category,
        min(order_date) as first_sold_on,
        max(order_date) as last_sold_on
    from _product_lines
    group by product_id
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
from clv_line_sales('_product_lines') m
join products p on p.product_id is not distinct from m.grain
order by m.revenue_exact desc, p.product_id;
