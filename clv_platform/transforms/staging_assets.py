"""staging/* assets: the cleaned tables, brought up to date together from raw in one transaction.

By default a run merges only the raw rows that arrived since the last build (transforms/staging.py);
run config `{"full_rebuild": true}` (the `full_rebuild` job) rebuilds every table from all of raw.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.ingestion.assets import RAW_KLAVIYO_PROFILES, RAW_SHOPIFY_ORDERS
from clv_platform.ingestion.file_assets import RAW_FILE_TRANSACTIONS
from clv_platform.ingestion.store_source import fail_unless_store_matches
from clv_platform.resources.storage import StorageResource, settings_of
from clv_platform.transforms.staging import RULES_VERSION, build_staging

RAW_INPUTS = [RAW_SHOPIFY_ORDERS, RAW_KLAVIYO_PROFILES, RAW_FILE_TRANSACTIONS]

# Asset keys of the staging tables, declared once (each = the DuckDB table staging.<name>).
ORDERS = dg.AssetKey(["staging", "orders"])
ORDER_LINES = dg.AssetKey(["staging", "order_lines"])
CUSTOMERS = dg.AssetKey(["staging", "customers"])
PRODUCTS = dg.AssetKey(["staging", "products"])
REFUNDS = dg.AssetKey(["staging", "refunds"])
RETURNS = dg.AssetKey(["staging", "returns"])
REJECTED_ROWS = dg.AssetKey(["staging", "rejected_rows"])
ORDER_HISTORY = dg.AssetKey(["staging", "order_history"])
CUSTOMER_ACQUISITION = dg.AssetKey(["staging", "customer_acquisition"])
STAGING_KEYS = {key.path[-1]: key for key in (
    ORDERS, ORDER_LINES, CUSTOMERS, PRODUCTS, REFUNDS, RETURNS, REJECTED_ROWS, ORDER_HISTORY, CUSTOMER_ACQUISITION,
)}

_DESCRIPTIONS = {
    "orders": "One row per order (newest version wins); test orders excluded; cancelled, voided and expired orders "
    "carry no revenue; revenue = Shopify net sales (gross sales − discounts − returns, without tax and shipping) "
    "in the shop currency, order_date = the shop's calendar day; guest orders tied to a customer by email.",
    "order_lines": "Line items of staging.orders with product, category, quantity, unit price and discount.",
    "customers": "One row per person, resolved across Shopify and Klaviyo by normalized email, with consent, "
    "location and Klaviyo's own predictions.",
    "products": "Products seen in order lines with their category, units sold and revenue.",
    "refunds": "One row per Shopify refund with its own date, so features can be computed as of a past cutoff.",
    "returns": "Every credit-note line of imported exports (Online Retail C invoices) with the order it was matched "
    "to (same customer and stock code, else the customer's latest earlier order, else none: booked on its own date); "
    "matched ones are also refunds of that order in staging.refunds.",
    "rejected_rows": "Every raw record that did not make it into staging, with source, record id, reason and payload "
                     "(null for a version superseded by a newer one, which stays in raw).",
    "order_history": "One row per order of a known customer with its place in the customer's purchase history "
    "(purchase number, days since the previous purchase, products and categories bought for the first time) "
    "and its refund dates; precomputed once so the point-in-time features are cheap at every cutoff.",
    "customer_acquisition": "One row per customer: their first order's channel (from Shopify's first visit: "
    "e-mail, paid/organic social, paid/organic search, direct, referral, pos, unknown), UTM campaign, discount "
    "codes, sales channel and first/last visit details.",
}


STAGING_SPECS = [
    dg.AssetSpec(
        key=STAGING_KEYS[name],
        deps=RAW_INPUTS,
        code_version=RULES_VERSION,  # all scripts together: one version for every table
        group_name="staging",
        kinds={"duckdb", "sql"},
        owners=["team:data-engineering"],
        description=description,
    )
    for name, description in _DESCRIPTIONS.items()
]


class StagingConfig(dg.Config):
    """How staging is brought up to date."""

    full_rebuild: bool = False
    """Rebuild every staging table from all of raw instead of merging the rows that arrived since the
    last build (which gives the same tables; a full rebuild is the fallback a merge takes by itself
    when raw rows it already read were deleted, imported files changed or the shop settings changed)."""


@dg.multi_asset(specs=STAGING_SPECS, name="staging_tables")
def staging_tables(context: dg.AssetExecutionContext, config: StagingConfig, duckdb: DuckDBResource):
    """Merge (or rebuild) staging from raw; fail (and keep the previous tables) if any raw row is unaccounted for."""
    settings = settings_of(duckdb)
    if isinstance(duckdb, StorageResource):  # a test's own plain resource names no store
        fail_unless_store_matches(duckdb, settings)
    with duckdb.get_connection() as conn:
        result = build_staging(
            conn, settings.file_currency if settings.source == "files" else None, settings.store_timezone,
            full_rebuild=config.full_rebuild, date_order=settings.file_date_order,
        )
        previews = {
            name: conn.execute(f"select * from staging.{name} limit 5").df()
            for name in _DESCRIPTIONS if name != "rejected_rows"
        }
        previews["rejected_rows"] = conn.execute(
            "select source, record_id, reason, left(payload, 80) as payload from staging.rejected_rows limit 5"
        ).df()
        contract.apply_comments(conn, schemas=("staging",))
        schemas = {name: contract.column_metadata(conn, f"staging.{name}") for name in _DESCRIPTIONS}
    context.log.info(f"staging {result.mode}" + (f" (full because {result.full_reason})" if result.full_reason else "")
                     + (f": {result.merged}" if result.merged else ""))
    for rec in result.reconciliation + result.load_reconciliation:
        context.log.info(
            f"{rec.source_table}: {rec.rows_in} in = {rec.accepted} accepted + {rec.rejected} rejected"
        )
    reconciliation_md = "\n".join(
        ["| raw table | rows in | accepted | rejected |", "|---|---|---|---|"]
        + [f"| {r.source_table} | {r.rows_in} | {r.accepted} | {r.rejected} |"
           for r in result.reconciliation + result.load_reconciliation]
    )
    for name in _DESCRIPTIONS:
        metadata = {
            "dagster/row_count": result.row_counts[name],
            **schemas[name],
            "preview": dg.MetadataValue.md(previews[name].head(5).to_markdown(index=False)),
        }
        if name == "orders":
            metadata["build_mode"] = result.mode
            if result.full_reason:
                metadata["full_build_reason"] = result.full_reason
            if result.merged:
                metadata["merged_keys"] = dg.MetadataValue.json(result.merged)
            metadata["shop_currency"] = result.shop_currency
            metadata["shop_timezone"] = result.shop_timezone
            metadata["revenue_basis"] = result.revenue_basis
        if name == "rejected_rows":
            metadata["reconciliation"] = dg.MetadataValue.md(reconciliation_md)
            metadata["reasons"] = dg.MetadataValue.json(result.reject_reasons)
        yield dg.MaterializeResult(asset_key=STAGING_KEYS[name], metadata=metadata)
