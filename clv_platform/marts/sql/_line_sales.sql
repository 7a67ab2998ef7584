-- The sales measures of product_performance and category_performance, written once so that the
-- two marts cannot drift apart. clv_line_sales(lines) reads a view of non-cancelled order lines
-- with a `grain` column (the product or the category) and returns one row per grain:
-- revenue, its share, units, orders, buyers and repeat buyers (bought the grain in at least two
-- different orders), and `revenue_exact`, the unrounded revenue the marts order by.
-- Buyers are resolved customers (unmatched guests count in revenue only).
create or replace temp macro clv_line_sales(lines) as table
with per_buyer as (
    select grain, customer_id, count(distinct order_id) as orders
    from query_table(lines)
    where customer_id is not null
    group by all
),
buyers as (
    select
        grain,
        count(*) as buyers,
        count(*) filter (where orders >= 2) as repeat_buyers
    from per_buyer
    group by grain
),
sales as (
    select
        grain,
        sum(line_revenue)::double as revenue,
        sum(quantity)::bigint as units,
        count(distinct order_id) as orders
    from query_table(lines)
    group by grain
)
select
    s.grain,
    s.revenue as revenue_exact,
    round(s.revenue, 2) as revenue,
    s.revenue / sum(s.revenue) over () as revenue_share,
    s.units,
    s.orders,
    coalesce(b.buyers, 0) as buyers,
    coalesce(b.repeat_buyers, 0) as repeat_buyers,
    coalesce(b.repeat_buyers, 0) / nullif(b.buyers, 0) as repeat_buyer_share,
    round(s.revenue / s.orders, 2) as revenue_per_order
from sales s
left join buyers b using (grain);
