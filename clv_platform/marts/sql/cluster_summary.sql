-- marts.cluster_summary: one row per behavioural cluster with its size, predicted value and history.
create or replace table marts.cluster_summary as
select
    cluster_id,
    any_value(cluster_name) as cluster_name,
    count(*) as customers,
    count(*) / sum(count(*)) over () as customer_share,
    round(sum(predicted_clv), 2) as total_predicted_clv,
    round(avg(predicted_clv), 2) as mean_predicted_clv,
    avg(p_alive) as mean_p_alive,
    avg(expected_purchases) as mean_expected_purchases,
    avg(p_purchase_30d) as mean_p_purchase_30d,
    round(sum(historical_revenue), 2) as historical_revenue,
    round(avg(historical_revenue), 2) as mean_historical_revenue,
    avg(order_count) as mean_order_count,
    mode(rfm_segment) as most_common_rfm_segment
from marts.customer_scores
group by cluster_id
order by cluster_id nulls last;
