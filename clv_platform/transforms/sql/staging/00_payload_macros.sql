-- clv_parsed_payloads(scope, structure): the rows of a raw-scope view (`_raw_orders_scope`,
-- `_raw_profiles_scope`) with their JSON payload parsed by json_transform into `structure`.
-- 01_order_versions.sql and 02_profile_versions.sql both start this way; one macro keeps the
-- raw bookkeeping columns (raw_rowid, source, ingested_at) the same for both kinds of version.
create or replace temp macro clv_parsed_payloads(scope, structure) as table
    select r.raw_rowid, r.source, r.ingested_at, json_transform(r.payload, structure) as payload
    from query_table(scope) as r;
