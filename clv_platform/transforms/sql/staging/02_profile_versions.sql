-- Klaviyo profile versions in scope (`_raw_profiles_scope`, like 01), parsed and checked;
-- 02_rank_profile_versions.sql ranks them (the newest version of each profile wins).
create or replace temp view _profile_versions_checked as
with parsed as (
    -- clv_parsed_payloads: 00_payload_macros.sql
    select * rename (payload as p) from clv_parsed_payloads('_raw_profiles_scope', '{
            "id": "VARCHAR",
            "attributes": {
                "email": "VARCHAR", "external_id": "VARCHAR", "created": "VARCHAR", "updated": "VARCHAR",
                "location": {"country": "VARCHAR", "city": "VARCHAR", "region": "VARCHAR"},
                "subscriptions": {"email": {"marketing": {
                    "can_receive_email_marketing": "BOOLEAN", "consent": "VARCHAR"}}},
                "predictive_analytics": {
                    "historic_clv": "DOUBLE", "predicted_clv": "DOUBLE", "total_clv": "DOUBLE",
                    "historic_number_of_orders": "DOUBLE", "predicted_number_of_orders": "DOUBLE",
                    "average_days_between_orders": "DOUBLE", "average_order_value": "DOUBLE",
                    "churn_probability": "DOUBLE", "expected_date_of_next_order": "VARCHAR"}
            }
        }')
),
typed as (
    select
        * exclude (p),  -- the raw bookkeeping columns of clv_parsed_payloads
        nullif(trim(p.id), '') as profile_id,
        nullif(lower(trim(p.attributes.email)), '') as email,
        p.attributes.external_id as external_id,
        timezone('UTC', try_cast(p.attributes.created as timestamptz)) as profile_created_at,
        timezone('UTC', try_cast(p.attributes.updated as timestamptz)) as updated_at,
        p.attributes.location.country as country,
        p.attributes.location.city as city,
        p.attributes.subscriptions.email.marketing.consent as email_consent,
        p.attributes.subscriptions.email.marketing.can_receive_email_marketing as can_receive_email_marketing,
        p.attributes.predictive_analytics.historic_clv as klaviyo_historic_clv,
        p.attributes.predictive_analytics.predicted_clv as klaviyo_predicted_clv,
        p.attributes.predictive_analytics.predicted_number_of_orders as klaviyo_predicted_orders,
        p.attributes.predictive_analytics.churn_probability as klaviyo_churn_probability,
        cast(timezone('UTC', try_cast(p.attributes.predictive_analytics.expected_date_of_next_order as timestamptz)) as date)
            as klaviyo_expected_next_order_date
    from parsed
),
checked as (
    select
        *,
        case
            when profile_id is null then 'missing profile id'
            when updated_at is null then 'missing or unparseable updated timestamp'
        end as invalid_reason
    from typed
)
select * from checked;
