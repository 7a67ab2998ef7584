-- Cookbook: ready-made questions for the published snapshot.
-- Open it read-only with `duckdb -readonly data/analytics.duckdb` and paste a query.
-- Each query starts with a `-- name:` line; clv_platform_tests/marts/test_cookbook.py runs them all.

-- name: top_100_customers_by_predicted_clv
-- The 100 customers with the highest predicted CLV, with what we know about them.
select
    clv_rank,
    customer_id, email,
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
    customer_id, email,
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
    customer_id, email,
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
    round(columns(['new_customer_revenue', 'returning_customer_revenue', 'guest_revenue']), 2)
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

-- name: revenue_forecast_next_12_months
-- Forecast net revenue per month after the as-of date, existing vs new customers, with 80 % intervals.
select
    period,
    period_start,
    period_end,
    -- columns([...]) applies the rounding to each listed column and keeps its name and order
    round(columns(['existing_revenue', 'new_revenue', 'total_revenue', 'total_revenue_low', 'total_revenue_high',
                   'expected_new_customers']), 0)
from marts.revenue_forecast
where period_kind = 'month'
order by period_start;

-- name: revenue_forecast_totals
-- Next 30, 90 and 365 days: total forecast, its interval, and the share expected from existing customers.
select
    period,
    round(columns(['total_revenue', 'total_revenue_low', 'total_revenue_high']), 0),
    round(existing_revenue / nullif(total_revenue, 0), 3) as existing_share
from marts.revenue_forecast
where period_kind = 'total'
order by period_end;

-- name: channels_by_customer_value
-- Which first-order channels bring the most valuable customers (all months, all campaigns and codes).
select
    channel,
    sum(customers) as customers,
    round(sum(first_order_value * customers) / sum(customers), 2) as first_order_value,
    round(sum(repeat_rate_90d * customers_observable_90d) / nullif(sum(customers_observable_90d), 0), 3)
        as repeat_rate_90d,
    round(sum(total_predicted_clv) / nullif(sum(scored_customers), 0), 2) as mean_predicted_clv,
    round(sum(total_predicted_clv), 0) as total_predicted_clv,
    round(sum(share_alive * scored_customers) / nullif(sum(scored_customers), 0), 3) as share_alive
from marts.acquisition_value
where is_all_months
group by channel
order by mean_predicted_clv desc;

-- name: campaigns_and_codes_by_value
-- Campaign × discount code: customers, value per customer with its 80 % interval, repeat rate.
-- Compare mean_predicted_clv with what a customer of the campaign cost to acquire.
select
    channel,
    campaign,
    discount_code,
    customers,
    round(customers_per_month, 1) as customers_per_month,
    round(first_order_value, 2) as first_order_value,
    round(repeat_rate_90d, 3) as repeat_rate_90d,
    round(columns(['mean_predicted_clv', 'mean_predicted_clv_low', 'mean_predicted_clv_high']), 2),
    round(share_alive, 3) as share_alive
from marts.acquisition_value
where is_all_months and customers >= 20
order by mean_predicted_clv desc;

-- name: new_customers_per_month_by_channel
-- Customers acquired per month and channel (the monthly rows of the mart).
select acquisition_month, channel, sum(customers) as customers, round(avg(first_order_value), 2) as first_order_value
from marts.acquisition_value
where not is_all_months
group by acquisition_month, channel
order by acquisition_month, customers desc;
