-- marts.segment_summary: size and predicted value of every RFM segment, lifecycle stage and CLV tier.
-- Long format: one row per (segment_type, segment); shares are within a segment_type. value_rank
-- orders the segments of a type by total predicted CLV (1 = most); money rounded to cents.
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
    rank() over (partition by segment_type order by sum(predicted_clv) desc nulls last, segment) as value_rank,
    count(*) as customers,
    count(*) / sum(count(*)) over (partition by segment_type) as customer_share,
    round(sum(predicted_clv), 2) as total_predicted_clv,
    sum(predicted_clv) / nullif(sum(sum(predicted_clv)) over (partition by segment_type), 0) as predicted_clv_share,
    round(avg(predicted_clv), 2) as mean_predicted_clv,
    avg(p_alive) as mean_p_alive,
    avg(expected_purchases) as mean_expected_purchases,
    avg(p_purchase_30d) as mean_p_purchase_30d,
    round(sum(historical_revenue), 2) as historical_revenue,
    avg(order_count) as mean_order_count
from labelled
group by segment_type, segment
order by segment_type, value_rank;
