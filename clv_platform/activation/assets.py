"""activation/* assets: the scores written back to Klaviyo profiles and Shopify customers.

Both run after the published snapshot (so the nightly `full_refresh` ends with them) and do
nothing unless the `activation` resource turns their destination on. In dry-run mode (the
default once on) they only write `activation.planned_changes`; in live mode they send the
planned values through `sync.py`, which records every batch before and after it is sent.
"""

from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.activation.plan import plan_changes
from clv_platform.activation.settings import ActivationResource
from clv_platform.activation.sync import (
    SyncReport,
    failure_limit,
    failures_exceeded,
    new_run_id,
    now_utc,
    preview,
    sync_klaviyo,
    sync_shopify,
)
from clv_platform.marts.assets import ANALYTICS_SNAPSHOT, CUSTOMER_SCORES
from clv_platform.resources.storage import row_count
from clv_platform.transforms.staging_assets import CUSTOMERS

OWNERS = ["team:analytics"]
UPSTREAM = [CUSTOMER_SCORES, CUSTOMERS, ANALYTICS_SNAPSHOT]


def _live_writer(destination: str, source: Any, log: Any) -> Any:
    """The write client for a live run; a clear error when no live credentials are configured."""
    if destination == "klaviyo":
        from clv_platform.resources.klaviyo import KlaviyoResource
        from clv_platform.resources.klaviyo_write import KlaviyoWriter

        if not isinstance(source, KlaviyoResource):
            raise dg.Failure("activation to Klaviyo in live mode needs KLAVIYO_API_KEY (a private key with "
                             "profiles:read and profiles:write); the demo store cannot be written to")
        return KlaviyoWriter(source, log)
    from clv_platform.resources.shopify import ShopifyResource
    from clv_platform.resources.shopify_write import ShopifyWriter

    if not isinstance(source, ShopifyResource):
        raise dg.Failure("activation to Shopify in live mode needs SHOPIFY_SHOP_DOMAIN and SHOPIFY_ACCESS_TOKEN "
                         "(an app with write_customers); the demo store cannot be written to")
    return ShopifyWriter(source, log)


def activate(
    context: dg.AssetExecutionContext,
    destination: str,
    duckdb: DuckDBResource,
    activation: ActivationResource,
    source: Any,
) -> dg.MaterializeResult:
    """Plan (and in live mode send) one destination's changes; metadata for either mode."""
    if not activation.enabled(destination):
        context.log.info(f"activation to {destination} is off (activation.toml: {destination}_enabled = false)")
        return dg.MaterializeResult(metadata={"status": "off", "mode": activation.mode})
    run_id = new_run_id(context.run.run_id[:8])
    with duckdb.get_connection() as conn:
        plan, absent = plan_changes(
            conn, destination, run_id=run_id, mode=activation.mode, now=now_utc(),
            shopify_tags=activation.shopify_tags,
        )
        metadata: dict[str, Any] = {
            "status": activation.mode,
            "planned_customers": plan.customers,
            "planned_values": plan.values,
            "planned_by_field": dg.MetadataValue.json(plan.by_field),
            "new_customers": plan.new_customers,
            # values the platform withdrew (e.g. a next purchase date no longer likely): cleared upstream
            "planned_clears": plan.clears,
            "preview": dg.MetadataValue.md(preview(plan.frame(limit=10))),
            "absent_score_columns": dg.MetadataValue.json(absent),
        }
        if activation.mode == "dry_run":
            context.log.info(
                f"activation to {destination}: dry run planned {plan.values} values for "
                f"{metadata['planned_customers']} customers into activation.planned_changes; nothing was sent"
            )
            return dg.MaterializeResult(metadata=metadata)
        writer = _live_writer(destination, source, context.log)
        try:
            sync = sync_klaviyo if destination == "klaviyo" else sync_shopify
            report: SyncReport = sync(conn, writer, plan, run_id, activation.options())
        finally:
            writer.close()
        metadata.update(report.as_metadata())
        metadata["rate_limit_waits"] = writer.client.rate_limit_waits
        metadata["state_rows"] = row_count(conn, "activation.sync_state")
        metadata["failures_preview"] = dg.MetadataValue.json(report.failures[:10])
    if failures_exceeded(report, activation.failure_ratio_threshold, activation.failure_count_floor):
        attempted = report.planned_customers - report.skipped_customers
        raise dg.Failure(
            f"activation to {destination}: {report.failed_customers} customers failed, more than the "
            f"{failure_limit(attempted, activation.failure_ratio_threshold, activation.failure_count_floor):.0f} "
            "allowed; see activation.sync_failures",
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


def activation_asset(key: list[str], destination: str, description: str) -> dg.AssetsDefinition:
    """An activation asset for one destination: both write back the same planned changes through
    `activate` and differ only in key, destination resource and description."""

    @dg.asset(
        key=key,
        deps=UPSTREAM,
        group_name="activation",
        owners=OWNERS,
        kinds={destination, "duckdb"},  # writes to the destination, keeps its sync state in DuckDB
        description=description,
        required_resource_keys={"duckdb", "activation", destination},
    )
    def _activation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resources = context.resources
        return activate(context, destination, resources.duckdb, resources.activation, getattr(resources, destination))

    return _activation


klaviyo_profiles = activation_asset(
    ["activation", "klaviyo_profiles"], "klaviyo",
    "clv_* custom properties on Klaviyo profiles, through bulk profile import jobs; a withdrawn value is "
    "removed with Update Profile (off by default).",
)
shopify_customers = activation_asset(
    ["activation", "shopify_customers"], "shopify",
    "clv namespace metafields (and optional clv: tags) on Shopify customers; a withdrawn value's metafield "
    "is deleted (off by default).",
)


ACTIVATION_ASSETS = [klaviyo_profiles, shopify_customers]
