-- Test oracle for the label part of features.training_query: labels straight from staging.orders
-- and staging.refunds (appended after `with features as (<reference_features.sql>)`).
, label_refunds as (
    select order_id, sum(cast(amount as double)) as refunded
    from staging.refunds
    where refunded_on <= $label_end::date
    group by order_id
),
labels as (
    select
        o.customer_id,
        sum(greatest(cast(o.gross_revenue as double) - coalesce(r.refunded, 0), 0)) as label_spend,
        count(*) as label_orders,
        count(distinct o.order_date) as label_purchase_days,
        min(o.order_date) - $cutoff::date as days_to_next_purchase
    from staging.orders as o
    left join label_refunds as r using (order_id)
    where o.customer_id is not null
      and o.order_date > $cutoff::date
      and o.order_date <= $label_end::date
      and not (o.is_cancelled and coalesce(o.cancelled_on <= $label_end::date, true))
    group by o.customer_id
)
select
    f.*,
    $label_end::date as label_end,
    coalesce(l.label_spend, 0) as label_spend,
    coalesce(l.label_orders, 0) as label_orders,
    coalesce(l.label_purchase_days, 0) as label_purchase_days,
    l.days_to_next_purchase
from features as f
left join labels as l on l.customer_id = f.customer_id
order by f.customer_id
