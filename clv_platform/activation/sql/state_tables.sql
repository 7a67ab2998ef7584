-- The activation bookkeeping tables. Created once, never replaced: they remember what was
-- sent, so a rerun only sends what changed and a crashed sync resumes without resending.
create schema if not exists activation;

-- The last value confirmed upstream, per destination, target (profile id / customer gid) and field.
create table if not exists activation.sync_state (
    destination varchar not null,
    target_id varchar not null,
    field varchar not null,
    customer_id varchar,
    value varchar,
    synced_at timestamp,
    run_id varchar,
    primary key (destination, target_id, field)
);

-- The latest plan per destination (dry run or live): one row per value to send.
create table if not exists activation.planned_changes (
    run_id varchar,
    destination varchar,
    mode varchar,
    customer_id varchar,
    target_id varchar,
    field varchar,
    old_value varchar,
    new_value varchar,
    planned_at timestamp
);

-- One row per write request, recorded before it is sent and updated after it is confirmed.
-- status: sending -> (submitted, Klaviyo jobs) -> done | failed | abandoned (in doubt after a crash).
create table if not exists activation.sync_batches (
    batch_id varchar primary key,
    destination varchar,
    run_id varchar,
    kind varchar,
    status varchar,
    item_count integer,
    items json,
    job_id varchar,
    created_at timestamp,
    updated_at timestamp,
    detail varchar
);

-- Every customer that could not be written (kind 'failed') or was skipped because it no
-- longer exists upstream (kind 'skipped'), with the reason.
create table if not exists activation.sync_failures (
    destination varchar,
    run_id varchar,
    customer_id varchar,
    target_id varchar,
    field varchar,
    kind varchar,
    reason varchar,
    recorded_at timestamp
);

-- One view per activation asset (asset key = schema.table): what is confirmed in each destination.
create or replace view activation.klaviyo_profiles as
select target_id as profile_id, customer_id, field, value, synced_at, run_id
from activation.sync_state where destination = 'klaviyo';

create or replace view activation.shopify_customers as
select target_id as shopify_customer_id, customer_id, field, value, synced_at, run_id
from activation.sync_state where destination = 'shopify';
