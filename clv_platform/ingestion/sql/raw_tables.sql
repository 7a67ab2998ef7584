-- raw layer: records exactly as received, plus when we received them.
create schema if not exists raw;

create table if not exists raw.shopify_orders (
    order_id       varchar,
    updated_at     timestamp,
    partition_date date,
    payload        json,
    source         varchar,
    ingested_at    timestamp
);

create table if not exists raw.klaviyo_profiles (
    profile_id  varchar,
    updated_at  timestamp,
    payload     json,
    source      varchar,
    ingested_at timestamp
);

-- one row per data row of an imported CSV/Excel export; every cell kept as text
-- so that nothing is lost before staging decides what is valid.
create table if not exists raw.file_transactions (
    file_name    varchar,
    file_format  varchar,
    row_number   bigint,
    order_id     varchar,
    customer_id  varchar,
    order_date   varchar,
    product_id   varchar,
    description  varchar,
    quantity     varchar,
    unit_price   varchar,
    amount       varchar,
    country      varchar,
    payload      json,
    ingested_at  timestamp
);

-- the shop's own settings as Shopify reports them (`shop { ianaTimezone currencyCode }`),
-- read once per orders load: order days are counted in this time zone, money in this currency.
create table if not exists raw.shopify_shop (
    shop_domain   varchar,
    iana_timezone varchar,
    currency_code varchar,
    source        varchar,
    fetched_at    timestamp
);

-- added later: the workbook sheet, the row's currency (column or store setting), why the line
-- could not be split into the header's fields, and the SHA-256 of the imported file.
alter table raw.file_transactions add column if not exists sheet_name varchar;
alter table raw.file_transactions add column if not exists currency varchar;
alter table raw.file_transactions add column if not exists parse_error varchar;
alter table raw.file_transactions add column if not exists content_sha256 varchar;
-- ',' when the file writes decimals with a comma (European Excel CSVs), else '.'
alter table raw.file_transactions add column if not exists decimal_separator varchar;
-- the cells of a layout's own columns that have no raw column, under canonical names (Shopify's
-- orders export: id, financial_status, cancelled_at, refunded_amount, ...; other layouts: status,
-- refunded_amount, order_date_zone), else NULL
alter table raw.file_transactions add column if not exists layout_fields json;
