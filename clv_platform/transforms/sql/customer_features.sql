-- Point-in-time customer features: one row per customer as of the DATE parameter $cutoff.
--
-- Rules that keep the features leak-free (see transforms/features.py for the why):
--   * only orders with order_date <= $cutoff, and only the lines of those orders, are read;
--   * an order counts as cancelled only if it was cancelled by the cutoff (cancelled_on);
--   * a refund counts only if it was made by the cutoff (refunded_on, the shop's calendar day);
--   * staging.customers is used for profile context only: its order_count / first_order_at /
--     last_order_at are computed over all time and would leak the future.
-- A purchase is a non-cancelled order, including a zero-net (fully refunded) one; the
-- population is every customer with at least one purchase by the cutoff.
-- Days are the BTYD transaction unit: several orders on one day are one transaction.
--
-- Performance: the order sequence (purchase number, days since the previous purchase, first
-- purchase day, first-bought product and category credits) does not depend on the cutoff and
-- is precomputed in staging.order_history. For almost every customer the purchases as of the
-- cutoff are a prefix of that sequence, so the features are one hash aggregation over the
-- history rows up to the cutoff. Two kinds of customer are the exception and are sequenced
-- here from their own few rows: those with an order placed by the cutoff and cancelled after
-- it (a live purchase on the cutoff day that the history's sequence skips), and those with an
-- order refunded partly by and partly after the cutoff (only staging.refunds has the split).
with exceptions as (
    select
        customer_id,
        order_id,
        first_refunded_on <= $cutoff::date and last_refunded_on > $cutoff::date as split_refund
    from staging.order_history
    where order_date <= $cutoff::date
      and (
          (is_cancelled and cancelled_on > $cutoff::date)
          or (first_refunded_on <= $cutoff::date and last_refunded_on > $cutoff::date)
      )
),

recomputed_customers as (
    select distinct customer_id from exceptions
),

split_refunds as (
    -- what was refunded by the cutoff of the orders refunded on both sides of it
    select r.order_id, sum(cast(r.amount as double)) as refunds
    from staging.refunds as r
    semi join (select order_id from exceptions where split_refund) using (order_id)
    where r.refunded_on <= $cutoff::date
    group by r.order_id
),

recomputed_orders as (
    -- the live orders as of the cutoff of the recomputed customers, sequenced as the history is
    select
        h.customer_id,
        h.order_id,
        h.order_date,
        h.gross_revenue,
        h.discount_amount,
        h.item_quantity,
        case when h.last_refunded_on <= $cutoff::date then h.refunded_total
             else coalesce(s.refunds, 0) end as refunds,
        row_number() over by_time as purchase_seq,
        h.order_date - lag(h.order_date) over by_time as days_since_prev_purchase,
        first_value(h.order_date) over by_time as first_purchase_date
    from staging.order_history as h
    semi join recomputed_customers using (customer_id)
    left join split_refunds as s using (order_id)
    where h.order_date <= $cutoff::date
      and not (h.is_cancelled and coalesce(h.cancelled_on <= $cutoff::date, true))
    window by_time as (partition by h.customer_id order by h.order_date, h.created_at, h.order_id)
),

recomputed_basket as (
    select
        l.customer_id,
        count(distinct l.product_id) as distinct_products,
        count(distinct l.category) as distinct_categories
    from staging.order_lines as l
    semi join recomputed_orders using (order_id)
    group by l.customer_id
),

purchases as (
    -- every purchase as of the cutoff, with refunds as of the cutoff
    select
        customer_id,
        order_date,
        purchase_seq,
        days_since_prev_purchase,
        first_purchase_date,
        gross_revenue,
        discount_amount,
        item_quantity,
        case when last_refunded_on <= $cutoff::date then refunded_total else 0 end as refunds,
        new_products,
        new_categories
    from staging.order_history
    anti join recomputed_customers using (customer_id)
    where order_date <= $cutoff::date and not is_cancelled

    union all

    select
        o.customer_id,
        o.order_date,
        o.purchase_seq,
        o.days_since_prev_purchase,
        o.first_purchase_date,
        o.gross_revenue,
        o.discount_amount,
        o.item_quantity,
        o.refunds,
        -- a recomputed customer's distinct counts ride on their first purchase
        case when o.purchase_seq = 1 then coalesce(b.distinct_products, 0) else 0 end,
        case when o.purchase_seq = 1 then coalesce(b.distinct_categories, 0) else 0 end
    from recomputed_orders as o
    left join recomputed_basket as b using (customer_id)
),

order_stats as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) filter (where purchase_seq = 1 or days_since_prev_purchase > 0) as purchase_days,
        count(*) as order_count,
        sum(net) as total_net_spend,
        sum(gross_revenue) as gross_spend,
        sum(discount_amount) as discount_total,
        sum(refunded) as refunded_total,
        cast(sum(item_quantity) as bigint) as items_total,
        coalesce(sum(net) filter (where order_date > first_purchase_date), 0) as repeat_day_spend,
        -- a positive gap is a gap between two distinct purchase days
        avg(days_since_prev_purchase) filter (where days_since_prev_purchase > 0) as mean_interpurchase_days,
        median(days_since_prev_purchase) filter (where days_since_prev_purchase > 0) as median_interpurchase_days,
        stddev_samp(days_since_prev_purchase) filter (where days_since_prev_purchase > 0) as std_interpurchase_days,
        count(*) filter (where order_date > $cutoff::date - 30) as orders_last_30d,
        count(*) filter (where order_date > $cutoff::date - 90) as orders_last_90d,
        count(*) filter (where order_date > $cutoff::date - 365) as orders_last_365d,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 90), 0) as spend_last_90d,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 180
                                    and order_date <= $cutoff::date - 90), 0) as spend_prev_90d,
        -- the 90 days that followed this date a year ago: what the customer did in the coming season
        count(*) filter (where order_date > $cutoff::date - 365
                           and order_date <= $cutoff::date - 275) as orders_next_90d_last_year,
        coalesce(sum(net) filter (where order_date > $cutoff::date - 365
                                    and order_date <= $cutoff::date - 275), 0) as spend_next_90d_last_year,
        sum(net) filter (where purchase_seq = 1) as first_order_value,
        sum(new_products) as distinct_products,
        sum(new_categories) as distinct_categories
    from (
        select
            *,
            least(refunds, gross_revenue) as refunded,
            gross_revenue - least(refunds, gross_revenue) as net
        from purchases
    )
    group by customer_id
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
    -- null for a customer who was not one a year ago (no season of theirs to repeat), not 0
    case when s.first_order_date <= $cutoff::date - 365 then s.orders_next_90d_last_year end
        as orders_next_90d_last_year,
    case when s.first_order_date <= $cutoff::date - 365 then s.spend_next_90d_last_year end
        as spend_next_90d_last_year,
    s.items_total / s.order_count as items_per_order,
    cast(s.distinct_products as bigint) as distinct_products,
    cast(s.distinct_categories as bigint) as distinct_categories,
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
left join staging.customers as c on c.customer_id = s.customer_id
