-- temp table forecast_btyd_summary: every buyer's BTYD summary at $cutoff (models.btyd.summarize in sql:
-- frequency = repeat purchase days, recency and T in weeks = days / 7, monetary = mean spend of the repeat
-- days, 0 without), for the revenue forecast's rehearsal and its fallback without ml.btyd_scores.
-- Never-cancelled orders, an untied guest order is its own buyer ('guest:' || order_id), several orders
-- of one day are one purchase day. Recency and T in observed time: clv_stretch_days (a temp macro,
-- forecast_refit.define_stretch_days) counts the days of the store's stretches without orders seen at
-- $cutoff inside a span (transforms.order_gaps), 0 without any.
create or replace temp table forecast_btyd_summary as
with days as (
    select coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date, sum(net_revenue::double) as amount
    from staging.orders
    where not is_cancelled and order_date <= $cutoff
    group by all
),
buyers as (
    select customer_id, min(order_date) as first_day, max(order_date) as last_day, count(*) - 1 as frequency,
           sum(amount) as spend, arg_min(amount, order_date) as first_amount
    from days
    group by all
)
select customer_id, frequency::bigint as frequency,
       (last_day - first_day - clv_stretch_days(first_day, last_day)) / 7.0 as recency,
       ($cutoff::date - first_day - clv_stretch_days(first_day, $cutoff::date)) / 7.0 as T,
       case when frequency > 0 then (spend - first_amount) / frequency else 0.0 end as monetary
from buyers;
