-- marts.category_performance: the product_performance measures per product category.
-- A repeat buyer of a category bought from it in at least two different orders (any products).
-- The measures come from clv_line_sales (_line_sales.sql), shared with product_performance.
create schema if not exists marts;

create or replace temp view _category_lines as
select *, coalesce(category, 'uncategorized') as grain from staging.order_lines where not is_cancelled;

create or replace table marts.category_performance as
with categories as (
    select grain, count(distinct product_id) as products
    from _category_lines
    group by grain
)
select
    m.grain as category,
    c.products,
    m.* exclude (grain, revenue_exact)
from clv_line_sales('_category_lines') m
join categories c using (grain)
order by m.revenue_exact desc, m.grain;
