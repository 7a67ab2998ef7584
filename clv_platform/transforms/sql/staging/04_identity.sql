-- Customer resolution. A person is keyed by normalized email across Shopify and
-- Klaviyo; the Shopify customer gid names them when there is one, otherwise the
-- Klaviyo profile. Two Shopify customer records with one email merge into the
-- lowest gid. Guest orders join a person through the same email.
create or replace temp view _accepted_orders as
select * from staging_build._order_versions where accepted;

create or replace temp view _accepted_profiles as
select * from _profile_versions_judged where reject_reason is null;

create or replace table staging_build._shopify_customers as
select
    shopify_customer_id,
    arg_max(email, updated_at) filter (where email is not null) as email
from _accepted_orders
where shopify_customer_id is not null
group by shopify_customer_id;

create or replace table staging_build._email_identity as
with by_email as (
    select email, min(shopify_customer_id) as shopify_customer_id, null::varchar as profile_id
    from staging_build._shopify_customers where email is not null group by email
    union all
    select email, null, arg_max(profile_id, updated_at)
    from _accepted_profiles where email is not null group by email
)
select
    email,
    max(shopify_customer_id) as shopify_customer_id,
    max(profile_id) as klaviyo_profile_id,
    coalesce(max(shopify_customer_id), 'klaviyo:' || max(profile_id)) as customer_id
from by_email
group by email;

-- every Shopify customer gid → the person it belongs to
create or replace table staging_build._customer_map as
select
    s.shopify_customer_id,
    coalesce(i.customer_id, s.shopify_customer_id) as customer_id
from staging_build._shopify_customers as s
left join staging_build._email_identity as i using (email);
