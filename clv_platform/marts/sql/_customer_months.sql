-- clv_customer_month_state(orders): the state revenue_monthly and cohort_retention aggregate
-- (marts/incremental.py), from a view of non-cancelled staging.orders rows. One row per customer
-- and calendar month they bought in, with the customer's first month (cohort_month, over all their
-- orders), or per unmatched guest order (guest_order_id, no cohort). A staging merge changes the
-- rows of exactly the customers and guest orders it re-resolved, which are recomputed whole.
-- Revenue stays decimal: the marts' sums are exact in any order.
create or replace temp macro clv_customer_month_state(orders) as table
select
    customer_id,
    case when customer_id is null then order_id end as guest_order_id,
    date_trunc('month', order_date)::date as month,
    case when customer_id is not null
         then min(date_trunc('month', order_date)::date) over (partition by customer_id) end as cohort_month,
    count(*) as orders,
    sum(net_revenue) as revenue
from query_table(orders)
group by customer_id, guest_order_id, month;
