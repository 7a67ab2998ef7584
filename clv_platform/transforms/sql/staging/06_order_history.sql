-- staging.order_history: one row per order of a known customer with its place in that
-- customer's purchase history. Everything here is independent of any cutoff, so it is built
-- once per staging build, while the features are built at many cutoffs per refresh
-- (scoring, every training window, the drift reference); see transforms/order_history.py.
--
-- The sequence runs over the customer's never-cancelled orders, ordered by (order_date,
-- created_at, order_id); cancelled orders carry nulls and zeros. On every cutoff at which none
-- of a customer's orders is "cancelled later" (placed by the cutoff, cancelled after it), the
-- customer's purchases as of the cutoff are exactly a prefix of this sequence, so the features
-- read purchase_seq, days_since_prev_purchase, first_purchase_date and the new_* credits as
-- they are. The feature query recomputes the few other customers itself.
--
-- new_products / new_categories credit each (customer, product) and (customer, category) pair
-- to the first never-cancelled order of the day it was first bought, so summing them over the
-- orders up to any cutoff gives the distinct counts as of that cutoff.
--
-- The rows are written in the window's output order, grouped by customer: the per-customer
-- aggregation of the features then finds its groups in cache (about 2x faster at a million
-- customers than on the same rows in arbitrary order).
create or replace table staging.order_history as
with refund_totals as (
    select
        order_id,
        sum(cast(amount as double)) as refunded_total,
        -- the shop's calendar days, as staging dated each refund for its source (an API refund's UTC
        -- instant in the shop's time zone; a file's wall clock as written)
        min(refunded_on) as first_refunded_on,
        max(refunded_on) as last_refunded_on
    from staging.refunds
    group by order_id
),

first_bought as (
    -- per (customer, day): how many products and categories the customer bought that day for
    -- the first time (never-cancelled lines only)
    select
        customer_id,
        first_day as order_date,
        count(*) filter (where is_product) as new_products,
        count(*) filter (where not is_product) as new_categories
    from (
        select customer_id, true as is_product, min(order_date) as first_day
        from staging.order_lines
        where customer_id is not null and not is_cancelled and product_id is not null
        group by customer_id, product_id
        union all
        select customer_id, false, min(order_date)
        from staging.order_lines
        where customer_id is not null and not is_cancelled and category is not null
        group by customer_id, category
    )
    group by customer_id, first_day
),

sequenced as (
    select
        o.customer_id,
        o.order_id,
        o.order_date,
        o.created_at,
        o.is_cancelled,
        o.cancelled_on,
        o.gross_revenue,
        o.discount_amount,
        o.item_quantity,
        r.refunded_total,
        r.first_refunded_on,
        r.last_refunded_on,
        f.new_products,
        f.new_categories,
        row_number() over by_time as seq,
        lag(o.order_date) over by_time as previous_date,
        first_value(o.order_date) over by_time as first_date
    from staging.orders as o
    left join refund_totals as r using (order_id)
    left join first_bought as f
      on f.customer_id = o.customer_id and f.order_date = o.order_date and not o.is_cancelled
    where o.customer_id is not null
    -- cancelled orders sort after every never-cancelled one: the sequence skips them
    window by_time as (partition by o.customer_id order by o.is_cancelled, o.order_date, o.created_at, o.order_id)
)

select
    customer_id,
    order_id,
    order_date,
    created_at,
    is_cancelled,
    -- the shop's calendar day, as staging.orders dated it for the order's source (like order_date)
    cancelled_on,
    cast(gross_revenue as double) as gross_revenue,
    cast(discount_amount as double) as discount_amount,
    item_quantity,
    coalesce(refunded_total, 0) as refunded_total,
    first_refunded_on,
    last_refunded_on,
    case when not is_cancelled then seq end as purchase_seq,
    case when not is_cancelled then order_date - previous_date end as days_since_prev_purchase,
    case when not is_cancelled then first_date end as first_purchase_date,
    -- the day's credits go to its first order (the one that starts a purchase day)
    case when not is_cancelled and (seq = 1 or previous_date < order_date) then coalesce(new_products, 0) else 0 end
        as new_products,
    case when not is_cancelled and (seq = 1 or previous_date < order_date) then coalesce(new_categories, 0) else 0 end
        as new_categories
from sequenced;
