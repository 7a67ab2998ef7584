-- marts.category_performance: the product_performance measures per product category.
-- A repeat buyer of a category bought from it in at least two different orders (any products).
-- The measures come from clv_line_sales (_line_sales.sql), shared with product_performance, over
-- marts_build.category_performance_state (per category and buyer, kept up to date by
-- marts/incremental.py); the product count per category is a distinct of (category, product), a
-- few hundred groups, read from the lines each run.
create schema if not exists marts;

create or replace table marts.category_performance as
with categories as (
    select grain, count(product_id) as products
    from (select distinct coalesce(category, 'uncategorized') as grain, product_id
          from staging.order_lines where not is_cancelled)
    group by grain
)
select
    m.grain as category,
    c.products,
    m.* exclude (grain, revenue_exact)
from clv_line_sales('marts_build.category_performance_state') m
join categories c using (grain)
order by m.revenue_exact desc, m.grain;
