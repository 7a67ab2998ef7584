-- one scoring's rows of monitoring.score_history: every customer of scores.customer_clv with the
-- scoring's id, time, cutoff, horizon and model, its predictions and tier, and its segments at the
-- time. {values} and {segments} are the column lists (a column the tables lack is a typed null).
-- The same day's snapshot of the same model is deleted first (in the caller's transaction), so
-- re-running a day replaces its rows instead of adding a second snapshot of it.
insert into monitoring.score_history by name
select
    $snapshot_id as snapshot_id,
    $scored_at::timestamp as scored_at,
    $cutoff::date as cutoff,
    $horizon_days::integer as horizon_days,
    $model_version as model_version,
    c.customer_id::varchar as customer_id,
    {values},
    {segments},
    $snapshotted_at::timestamp as snapshotted_at
from scores.customer_clv as c
{segment_join}
