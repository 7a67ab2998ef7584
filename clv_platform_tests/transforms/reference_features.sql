-- Test oracle: the direct formulation of sql/customer_features.sql, kept only to check it.
-- It sequences every order with a window and counts distinct products over the lines at each
-- cutoff, with no precomputed staging.order_history; the production query must give exactly the
-- same rows (test_features.py::test_matches_the_direct_formulation). Labels: reference_labels.sql.
--
-- Point-in-time customer features: one row per customer as of the DATE parameter $cutoff.
--
-- Rules that keep the features leak-free (see transforms/features.py for the why):
--   * only orders with order_date <= $cutoff, and only the lines of those orders, are read;
--   * an order counts as cancelled only if it was cancelled by the cutoff (cancelled_on);
--   * a refund counts only if it was made by the cutoff (staging.refunds.refunded_on);
--   * staging.customers is used for profile context only: its order_count / first_order_at /
--     last_order_at are computed over all time and would leak the future.
-- A purchase is a non-cancelled order, including a zero-net (fully refunded) one; the
-- population is every customer with at least one purchase by the cutoff.
-- Days are the BTYD transaction unit: several orders on one day are one transaction.
-- Performance: one window over the orders (sorted per customer), one hash aggregation of
-- orders and one of lines per customer, a few hash joins; no correlated subqueries.
with refunds_by_cutoff as (
    -- refunds count from the day they were made: a refund issued after the cutoff is unknown at it
    select order_id, sum(cast(amount as double)) as refunded
    from staging.refunds
    where refunded_on <= $cutoff::date
    group by order_id
),

purchase_orders as (
    select
        o.customer_id,
        o.order_id,
        o.order_date,
        o.created_at,
        cast(o.gross_revenue as double) as gross,
        cast(o.discount_amount as double) as discount,
        least(coalesce(r.refunded, 0), cast(o.gross_revenue as double)) as refunded,
        greatest(cast(o.gross_revenue as double) - coalesce(r.refunded, 0), 0) as net,
        o.item_quantity
    from staging.orders as o
    left join refunds_by_cutoff as r using (order_id)
    where o.customer_id is not null
      and o.order_date <= $cutoff::date
      and not (o.is_cancelled and coalesce(o.cancelled_on <= $cutoff::date, true))
),

sequenced as (
    -- gap_days is 0 for a further order on the same day, so gaps between distinct
    -- purchase days are exactly the positive gaps
    select
        *,
        order_date - lag(order_date) over by_time as gap_days,
        row_number() over by_time as order_number,
        first_value(order_date) over by_time as first_day
    from purchase_orders
    window by_time as (partition by customer_id order by order_date, created_at, order_id)
),

order_stats as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) filter (where order_number = 1 or gap_days > 0) as purchase_days,
        count(*) as order_count,
        sum(net) as total_net_spend,
        sum(gross) as gross_spend,
        sum(discount) as discount_total,
        sum(refunded) as refunded_total,
        cast(sum(item_quantity) as bigint) as items_total,
        coalesce(sum(net) filter (where order_date > first_day), 0) as repeat_day_spend,
        avg(gap_days) filter (where gap_days > 0) as mean_interpurchase_days,
        median(gap_days) filter (where gap_days > 0) as median_interpurchase_days,
        stddev_samp(gap_days) filter (where gap_days > 0) as std_interpurchase_days,
        count(*) filter (where order_date > $cutoff::date - 30) as orders_last_30d,
        count(*) filter (where order_date > $cutoff::date - 90) as orders_last_90d,
        count(*) filter (where order_date > $cutoff::date - 365) as orders_last_365d,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 90), 0) as spend_last_90d,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 180
                                    and order_date <= $cutoff::date - 90), 0) as spend_prev_90d,
        count(*) filter (where order_date > $cutoff::date - 365
                           and order_date <= $cutoff::date - 275) as orders_next_90d_last_year,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 365
                                    and order_date <= $cutoff::date - 275), 0) as spend_next_90d_last_year,
        sum(net) filter (where order_number = 1) as first_order_value
    from sequenced
    group by customer_id
),

products as (
    -- a dense integer per (product, category) seen in the lines: the per-customer distinct
    -- counts below then de-duplicate small integers in a list instead of hashing every
    -- (customer id, product id) string pair, about 1.5x faster at a million customers
    select
        product_id,
        category,
        case when product_id is not null then dense_rank() over (order by product_id) end as product_key,
        case when category is not null then dense_rank() over (order by category) end as category_key
    from (select distinct product_id, category from staging.order_lines)
),

basket as (
    select
        l.customer_id,
        len(list_distinct(list(p.product_key))) as distinct_products,
        len(list_distinct(list(p.category_key))) as distinct_categories
    from staging.order_lines as l
    join products as p
      on p.product_id is not distinct from l.product_id and p.category is not distinct from l.category
    where l.customer_id is not null
      and l.order_date <= $cutoff::date
      and (not l.is_cancelled
           or l.order_id in (
               select order_id
               from staging.orders
               where is_cancelled
                 and order_date <= $cutoff::date
                 and cancelled_on > $cutoff::date
           ))
    group by l.customer_id
)

select
    s.customer_id,
    $cutoff::date as feature_cutoff,
    s.first_order_date,
    s.last_order_date,
    $cutoff::date - s.last_order_date as days_since_last_order,
    s.purchase_days - 1 as frequency,
    coalesce(s.repeat_day_spend / nullif(s.purchase_days - 1, 0), 0) as monetary,
    s.total_net_spend / s.order_count as avg_order_value,
    s.total_net_spend,
    s.order_count,
    s.purchase_days,
    $cutoff::date - s.first_order_date as T_days,
    s.last_order_date - s.first_order_date as first_to_last_order_days,
    ($cutoff::date - s.first_order_date) / 7 as T_weeks,
    (s.last_order_date - s.first_order_date) / 7 as recency_weeks,
    s.mean_interpurchase_days,
    s.median_interpurchase_days,
    s.std_interpurchase_days,
    ($cutoff::date - s.last_order_date) / s.mean_interpurchase_days as recency_to_interval_ratio,
    s.orders_last_30d,
    s.orders_last_90d,
    s.orders_last_365d,
    s.spend_last_90d,
    s.spend_prev_90d,
    (s.spend_last_90d - s.spend_prev_90d) / nullif(s.spend_last_90d + s.spend_prev_90d, 0) as spend_trend_90d,
    case when s.first_order_date <= $cutoff::date - 365 then s.orders_next_90d_last_year end
        as orders_next_90d_last_year,
    case when s.first_order_date <= $cutoff::date - 365 then s.spend_next_90d_last_year end
        as spend_next_90d_last_year,
    s.items_total / s.order_count as items_per_order,
    coalesce(b.distinct_products, 0) as distinct_products,
    coalesce(b.distinct_categories, 0) as distinct_categories,
    s.refunded_total / nullif(s.gross_spend, 0) as refund_rate,
    s.discount_total / nullif(s.gross_spend + s.discount_total, 0) as discount_share,
    s.first_order_value,
    cast(date_trunc('month', s.first_order_date) as date) as cohort_month,
    c.country,
    c.email_consent,
    c.can_receive_email_marketing,
    case
        when cast(c.profile_created_at as date) <= $cutoff::date
            then $cutoff::date - cast(c.profile_created_at as date)
    end as profile_age_days
from order_stats as s
left join basket as b on b.customer_id = s.customer_id
left join staging.customers as c on c.customer_id = s.customer_id
