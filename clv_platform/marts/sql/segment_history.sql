-- marts.segment_history: segment sizes per scoring date, kept across runs.
-- Re-scoring the same date replaces that date's rows (the asset runs this file in one transaction),
-- so reruns never duplicate.
create table if not exists marts.segment_history (
    scoring_date date,
    segment_type varchar,
    segment varchar,
    customers bigint,
    customer_share double,
    total_predicted_clv double,
    mean_p_alive double,
    model_version varchar,
    recorded_at timestamp
);

delete from marts.segment_history where scoring_date = $scoring_date::date;

insert into marts.segment_history
select
    $scoring_date::date,
    segment_type,
    segment,
    customers,
    customer_share,
    total_predicted_clv,
    mean_p_alive,
    (select max(model_version) from marts.customer_scores),
    timezone('UTC', now())
from marts.segment_summary;
