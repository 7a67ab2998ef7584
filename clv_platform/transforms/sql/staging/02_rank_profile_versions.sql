-- The newest valid version of each profile wins; `_profile_versions_rank_input` as in
-- 01_rank_order_versions.sql.
create or replace table staging_build._profile_versions as
select
    *,
    row_number() over (
        partition by profile_id, invalid_reason is null
        order by updated_at desc, ingested_at desc
    ) as version_rank,
    max(updated_at) over (partition by profile_id, invalid_reason is null) as latest_updated_at
from _profile_versions_rank_input;

create or replace temp view _profile_versions_judged as
select
    *,
    case
        when invalid_reason is not null then invalid_reason
        when version_rank > 1 and updated_at = latest_updated_at
            then 'duplicate of an accepted profile version'
        when version_rank > 1 then 'superseded by a newer version of the profile'
    end as reject_reason
from staging_build._profile_versions;
