-- marts.cluster_summary: one row per behavioural cluster with its size, predicted value and history.
create or replace table marts.cluster_summary as
select
    cluster_id,
    any_value(cluster_name) as cluster_name,
    count(*) as customers,
    count(*) / sum(count(*)) over () as customer_share,
    sum(predicted_clv) as total_predicted_clv,
    avg(predicted_clv) as mean_predicted_clv,
    avg(p_alive) as mean_p_alive,
    avg(expected_purchases) as mean_expected_purchases,
    avg(p_purchase_30d) as mean_p_purchase_30d,
    sum(historical_revenue) as historical_revenue,
    avg(historical_revenue) as mean_historical_revenue,
    avg(order_count) as mean_order_count,
    mode(rfm_segment) as most_common_rfm_segment
from marts.customer_scores
group by cluster_id
order by cluster_id nulls last;
