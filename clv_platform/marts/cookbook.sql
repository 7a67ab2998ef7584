-- Cookbook: ready-made questions for the published snapshot.
-- Open it read-only with `duckdb -readonly data/analytics.duckdb` and paste a query.
-- Each query starts with a `-- name:` line; clv_platform_tests/marts/test_cookbook.py runs them all.

-- name: top_100_customers_by_predicted_clv
-- The 100 customers with the highest predicted CLV, with what we know about them.
select
    clv_rank,
    customer_id,
    email,
    round(predicted_clv, 2) as predicted_clv,
    round(p_alive, 3) as p_alive,
    round(expected_purchases, 2) as expected_purchases,
    predicted_next_purchase_date,
    rfm_segment,
    lifecycle_stage,
    clv_tier,
    order_count,
    round(historical_revenue, 2) as historical_revenue
from marts.customer_scores
order by clv_rank
limit 100;

-- name: customer_by_email
-- Everything about one customer. Replace the address; emails are stored trimmed and lower case.
select *
from marts.customer_scores
where email = lower(trim('jane.doe@example.com'));

-- name: high_value_customers_at_risk
-- Top-20% predicted value whose lifecycle stage is at risk / churned or who are probably gone
-- (p_alive < 0.5): the win-back list, most valuable first.
select
    customer_id,
    email,
    round(predicted_clv, 2) as predicted_clv,
    round(p_alive, 3) as p_alive,
    lifecycle_stage,
    rfm_segment,
    last_order_date,
    round(historical_revenue, 2) as historical_revenue,
    can_receive_email_marketing
from marts.customer_scores
where clv_percentile >= 80
  and (lifecycle_stage in ('at_risk', 'churned') or p_alive < 0.5)
order by predicted_clv desc;

-- name: customers_expected_to_buy_next_week
-- Who is expected to buy in the 7 days after the data's as-of date (yesterday on a live store): the
-- customers most likely to, as many as P(purchase within 7 days) adds up to over everyone (the
-- expected number of buyers), plus everyone whose predicted next purchase date falls in the week.
-- The date is the median time given a purchase within 90 days (null when that purchase is unlikely),
-- so it agrees with p_purchase_7d / p_purchase_30d.
with ranked as (
    select
        *,
        row_number() over (order by p_purchase_7d desc nulls last, customer_id) as rank_7d,
        sum(p_purchase_7d) over () as expected_buyers_7d
    from marts.customer_scores
)
select
    customer_id,
    email,
    predicted_next_purchase_date,
    round(p_purchase_30d, 3) as p_purchase_30d,
    round(predicted_clv, 2) as predicted_clv,
    rfm_segment,
    round(p_purchase_7d, 3) as p_purchase_7d
from ranked
where (p_purchase_7d is not null and rank_7d <= ceil(expected_buyers_7d))
   or (predicted_next_purchase_date > as_of_date and predicted_next_purchase_date <= as_of_date + 7)
order by p_purchase_7d desc nulls last, predicted_next_purchase_date, customer_id;

-- name: segment_sizes_over_time
-- RFM segment sizes per scoring date (one scoring date is added per scoring run).
select
    scoring_date,
    segment as rfm_segment,
    customers,
    round(customer_share, 4) as customer_share,
    round(total_predicted_clv, 2) as total_predicted_clv
from marts.segment_history
where segment_type = 'rfm_segment'
order by scoring_date, customers desc;

-- name: revenue_last_12_months
-- Monthly revenue split into new, returning and guest customers.
select
    month,
    round(revenue, 2) as revenue,
    orders,
    round(average_order_value, 2) as average_order_value,
    new_customers,
    returning_customers,
    round(new_customer_revenue, 2) as new_customer_revenue,
    round(returning_customer_revenue, 2) as returning_customer_revenue,
    round(guest_revenue, 2) as guest_revenue
from marts.revenue_monthly
where month > (select max(month) from marts.revenue_monthly) - interval 12 month
order by month;

-- name: cohort_retention_matrix
-- Share of each acquisition cohort active 0-6 months after its first order.
pivot (
    select cohort_month, cohort_customers, months_since_first_order, round(retention_share, 3) as retention_share
    from marts.cohort_retention
    where months_since_first_order <= 6
)
on months_since_first_order
using any_value(retention_share)
order by cohort_month;
