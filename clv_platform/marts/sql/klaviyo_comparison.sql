-- marts.klaviyo_comparison: our predicted CLV and next purchase date beside Klaviyo's own
-- predictions (staging.customers) for the customers both sides scored. Ranks are computed within
-- the compared customers (1 = highest CLV); the Spearman correlation of the two rankings is
-- recorded as asset metadata.
create schema if not exists marts;

create or replace table marts.klaviyo_comparison as
with both_scored as (
    -- one line per compared quantity: ours first, then Klaviyo's
    select
        s.customer_id, s.email,
        s.predicted_clv, round(k.klaviyo_predicted_clv, 2) as klaviyo_predicted_clv,
        round(k.klaviyo_historic_clv, 2) as klaviyo_historic_clv,
        s.predicted_next_purchase_date, k.klaviyo_expected_next_order_date,
        s.p_alive, 1 - k.klaviyo_churn_probability as klaviyo_p_alive,
        s.clv_tier, s.historical_revenue
    from marts.customer_scores s
    join staging.customers k on k.customer_id = s.customer_id
    where s.predicted_clv is not null and k.klaviyo_predicted_clv is not null
)
select
    *,
    round(predicted_clv - klaviyo_predicted_clv, 2) as clv_difference,
    datediff('day', klaviyo_expected_next_order_date, predicted_next_purchase_date) as next_order_days_difference,
    rank() over (order by predicted_clv desc) as our_clv_rank,
    rank() over (order by klaviyo_predicted_clv desc) as klaviyo_clv_rank
from both_scored;
-- no ORDER BY: every reader that shows rows in order sorts them by the contract's order_by
-- (predicted_clv desc, customer_id: the snapshot, the preview), so a sort here was done twice

