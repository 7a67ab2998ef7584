-- The newest valid version of each order wins. `_order_versions_rank_input` is every parsed
-- version on a full build; on a merge, the new versions plus the stored versions of the orders
-- they touch (transforms/staging.py), so an order's versions are always ranked together.
create or replace table staging_build._order_versions as
with ranked as (
    select
        *,
        row_number() over (
            partition by order_id, invalid_reason is null
            order by updated_at desc, ingested_at desc
        ) as version_rank,
        max(updated_at) over (partition by order_id, invalid_reason is null) as latest_updated_at
    from _order_versions_rank_input
)
select
    *,
    case
        when invalid_reason is not null then invalid_reason
        when version_rank > 1 and updated_at = latest_updated_at
            then 'duplicate of an accepted order version'
        when version_rank > 1 then 'superseded by a newer version of the order'
        when is_test then 'test order'
    end as reject_reason,
    -- a stored flag, not a filter on the CASE above: DuckDB estimates `accepted` from its
    -- statistics, and a 50x under-estimate made the joins build hash tables on the orders
    reject_reason is null as accepted
from ranked;
