-- The values to send to one destination: desired values that differ from the last confirmed
-- sync. Reads the temp view _activation_values (customer_id, target_id, one varchar column per
-- field, canonical strings) that plan.py builds from marts.customer_scores.
--
-- A null value is kept (include nulls): a value the platform no longer gives (a next purchase
-- date withdrawn because the purchase became unlikely) must be cleared upstream, not left there
-- stale. A null never sent before is no change; a field plan.py left out of the view (absent
-- from the mart, or null for every customer) is not touched at all.
create or replace temp table _activation_desired as
with one_per_target as (
    select * from _activation_values
    where target_id is not null
    qualify row_number() over (partition by target_id order by customer_id) = 1
)
select customer_id, target_id, field, value
from one_per_target
unpivot include nulls (value for field in (columns(* exclude (customer_id, target_id))));

create or replace temp table _activation_changes as
with state as (
    select target_id, field, value from activation.sync_state where destination = $destination
),
joined as (
    select d.customer_id, d.target_id, d.field, d.value as new_value, s.value as old_value
    from _activation_desired as d
    left join state as s using (target_id, field)
),
triggered as (
    select * from joined
    where field <> 'clv_scored_at'
      and old_value is distinct from new_value
      -- a tag we never set needs no removal
      and not (field like 'tag:%' and new_value = 'false' and old_value is null)
),
planned as (
    select * from triggered
    union all
    select * from joined
    where field = 'clv_scored_at' and target_id in (select target_id from triggered)
)
-- seq numbers the targets 1..n in target order, and the rows are stored in that order, so that
-- the sync reads a block of targets at a time (`seq between a and b` skips the other row groups)
select dense_rank() over (order by target_id) as seq, customer_id, target_id, field, new_value, old_value
from planned
order by target_id, field;

drop table _activation_desired;

delete from activation.planned_changes where destination = $destination;

insert into activation.planned_changes
select $run_id, $destination, $mode, customer_id, target_id, field, old_value, new_value, $now
from _activation_changes;
