-- marts.acquisition_value: what the customers of each first-order channel, campaign and discount
-- code are worth. Read with the temp view acquisition_clv_input (customer_id, predicted_clv,
-- p_alive, clv_p10, clv_p90) made by the asset from scores.customer_clv; as_of = the scoring cutoff.
--
-- Two grains in one table: one row per (channel, campaign, discount_code, acquisition_month), and
-- one row per (channel, campaign, discount_code) over all months with acquisition_month null.
-- The 90-day repeat rate counts only customers whose first order is at least 90 days before the
-- as-of date (the others could not have repeated yet); a repeat is a never-cancelled order on a
-- later day within 90 days of the first. The interval of the mean predicted CLV is the 80 %
-- interval of the group's average (mean ± 1.2816 · sd / √n over its scored customers): how
-- precisely the group's value per customer is known, which is what comparing channels needs.
create schema if not exists marts;

create or replace table marts.acquisition_value as
with second_days as (
    select h.customer_id, min(h.order_date) as second_purchase_date
    from staging.order_history as h
    join staging.customer_acquisition as a using (customer_id)
    where h.purchase_seq >= 2 and h.order_date > a.first_order_date
    group by h.customer_id
),
acquired as (
    select
        a.customer_id,
        a.channel,
        a.campaign,
        a.discount_code,
        date_trunc('month', a.first_order_date)::date as acquisition_month,
        a.first_order_net_revenue,
        a.first_order_date + 90 <= cast($as_of as date) as observable_90d,
        coalesce(s.second_purchase_date <= a.first_order_date + 90
                 and s.second_purchase_date <= cast($as_of as date), false) as repeated_90d,
        c.predicted_clv,
        c.p_alive,
        c.clv_p10,
        c.clv_p90
    from staging.customer_acquisition as a
    left join second_days as s using (customer_id)
    left join acquisition_clv_input as c using (customer_id)
    where a.first_order_date <= cast($as_of as date)
),
store_months as (
    select datediff('month', min(acquisition_month), date_trunc('month', cast($as_of as date))) + 1 as months
    from acquired
),
together as (
    -- both grains in one pass: the month rows, and the all-months rollup (acquisition_month null)
    select
        channel, campaign, discount_code, acquisition_month,
        count(*) as customers,
        case when grouping(acquisition_month) = 1 then any_value(store_months.months) else 1 end as months_acquiring,
        avg(first_order_net_revenue) as first_order_value,
        count(*) filter (where observable_90d) as customers_observable_90d,
        count(*) filter (where observable_90d and repeated_90d) as repeaters_90d,
        count(predicted_clv) as scored_customers,
        avg(predicted_clv) as mean_predicted_clv,
        stddev_samp(predicted_clv) as sd_predicted_clv,
        sum(predicted_clv) as total_predicted_clv,
        sum(clv_p10) as sum_customer_clv_p10,
        sum(clv_p90) as sum_customer_clv_p90,
        avg(p_alive) as share_alive
    from acquired
    cross join store_months
    group by grouping sets ((channel, campaign, discount_code, acquisition_month), (channel, campaign, discount_code))
)
select
    channel,
    campaign,
    discount_code,
    acquisition_month,
    acquisition_month is null as is_all_months,
    customers,
    customers / months_acquiring::double as customers_per_month,
    first_order_value,
    customers_observable_90d,
    repeaters_90d / nullif(customers_observable_90d, 0)::double as repeat_rate_90d,
    scored_customers,
    mean_predicted_clv,
    case when scored_customers >= 2
         then mean_predicted_clv - 1.2815515655446004 * sd_predicted_clv / sqrt(scored_customers) end
        as mean_predicted_clv_low,
    case when scored_customers >= 2
         then mean_predicted_clv + 1.2815515655446004 * sd_predicted_clv / sqrt(scored_customers) end
        as mean_predicted_clv_high,
    total_predicted_clv,
    case when scored_customers >= 2
         then scored_customers * (mean_predicted_clv - 1.2815515655446004 * sd_predicted_clv / sqrt(scored_customers))
    end as total_predicted_clv_low,
    case when scored_customers >= 2
         then scored_customers * (mean_predicted_clv + 1.2815515655446004 * sd_predicted_clv / sqrt(scored_customers))
    end as total_predicted_clv_high,
    sum_customer_clv_p10,
    sum_customer_clv_p90,
    share_alive
from together
order by is_all_months desc, total_predicted_clv desc nulls last, channel, campaign, discount_code, acquisition_month;
