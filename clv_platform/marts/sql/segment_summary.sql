-- marts.segment_summary: size and predicted value of every RFM segment, lifecycle stage and CLV tier.
-- Long format: one row per (segment_type, segment); shares are within a segment_type.
create or replace table marts.segment_summary as
with labelled as (
    select 'rfm_segment' as segment_type, coalesce(rfm_segment, 'unknown') as segment, * from marts.customer_scores
    union all by name
    select 'lifecycle_stage' as segment_type, coalesce(lifecycle_stage, 'unknown') as segment, * from marts.customer_scores
    union all by name
    select 'clv_tier' as segment_type, coalesce(clv_tier, 'unknown') as segment, * from marts.customer_scores
)
select
    segment_type,
    segment,
    count(*) as customers,
    count(*) / sum(count(*)) over (partition by segment_type) as customer_share,
    sum(predicted_clv) as total_predicted_clv,
    sum(predicted_clv) / nullif(sum(sum(predicted_clv)) over (partition by segment_type), 0) as predicted_clv_share,
    avg(predicted_clv) as mean_predicted_clv,
    avg(p_alive) as mean_p_alive,
    avg(expected_purchases) as mean_expected_purchases,
    avg(p_purchase_30d) as mean_p_purchase_30d,
    sum(historical_revenue) as historical_revenue,
    avg(order_count) as mean_order_count
from labelled
group by segment_type, segment
order by segment_type, total_predicted_clv desc nulls last, segment;
