-- The sales measures of product_performance and category_performance, written once so that the
-- two marts cannot drift apart, in two steps so that a nightly run updates only what the day
-- touched (marts/incremental.py):
--
-- clv_line_state(line_rows) reads a view of non-cancelled order lines with a `grain` column (the
-- product or the category) and returns one row per grain and buyer: a resolved customer
-- (customer_id), or one unmatched guest order (guest_order_id; guests count in revenue and
-- orders only). Every column sums or takes a min/max across buyers, so the marts are
-- aggregations of this state, and the state rows of the customers and guest orders a staging
-- merge re-resolved are simply recomputed. Revenue stays decimal: the sums are exact in any order.
--
-- clv_line_sales(state) returns one row per grain: revenue, its share, units, orders, buyers and
-- repeat buyers (bought the grain in at least two different orders), and `revenue_exact`, the
-- unrounded revenue the marts order by. An order has one customer, so the grain's orders are the
-- sum of its buyers' orders.
create or replace temp macro clv_line_state(line_rows) as table
with per_order as (
    -- one row per grain and order first: the buyer's distinct orders are then a plain count (a
    -- grouped count(distinct) over every line cost about twice as much)
    select
        grain,
        customer_id,
        order_id,
        sum(line_revenue) as revenue,
        sum(quantity) as units,
        count(*) as lines,
        max(sku) as sku,
        max(title) as title,
        max(category) as category,
        min(order_date) as first_sold_on,
        max(order_date) as last_sold_on
    from query_table(line_rows)
    group by grain, customer_id, order_id
)
select
    grain,
    customer_id,
    case when customer_id is null then order_id end as guest_order_id,
    count(*) as orders,
    sum(revenue) as revenue,
    sum(units) as units,
    sum(lines) as lines,
    max(sku) as sku,
    max(title) as title,
    max(category) as category,
    min(first_sold_on) as first_sold_on,
    max(last_sold_on) as last_sold_on
from per_order
group by grain, customer_id, guest_order_id;

create or replace temp macro clv_line_sales(state) as table
with sales as (
    select
        grain,
        sum(revenue) as revenue_decimal,
        sum(units)::bigint as units,
        sum(orders)::bigint as orders,
        count(customer_id) as buyers,
        count(*) filter (where customer_id is not null and orders >= 2) as repeat_buyers
    from query_table(state)
    group by grain
)
select
    grain,
    revenue_decimal::double as revenue_exact,
    round(revenue_decimal::double, 2) as revenue,
    (revenue_decimal / sum(revenue_decimal) over ())::double as revenue_share,
    units,
    orders,
    buyers,
    repeat_buyers,
    repeat_buyers / nullif(buyers, 0) as repeat_buyer_share,
    round(revenue_decimal::double / orders, 2) as revenue_per_order
from sales;
