"""The clv_platform code location: the one place that decides which systems are used.

With no Shopify credentials the whole graph runs on the built-in demo store; with
`SHOPIFY_SHOP_DOMAIN` + `SHOPIFY_CLIENT_ID`/`SHOPIFY_CLIENT_SECRET` (or a legacy
`SHOPIFY_ACCESS_TOKEN`) and optionally `KLAVIYO_API_KEY` the same
assets pull the real store. Secrets are bound with `EnvVar`, so their values are read at
run time and never shown in the UI.
"""

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.activation.assets import ACTIVATION_ASSETS
from clv_platform.activation.settings import activation_resource
from clv_platform.automation.jobs import (
    activate_now_job,
    full_refresh_job,
    import_file_job,
    rebuild_from_staging_job,
    refresh_everything_job,
)
from clv_platform.automation.monitoring_sensors import MONITORING_JOBS, MONITORING_SENSORS
from clv_platform.automation.schedules import JOBS as SCHEDULED_JOBS
from clv_platform.automation.schedules import SCHEDULES
from clv_platform.automation.sensors import inbox_file_sensor, rebuild_after_import_sensor
from clv_platform.checks import checks_for
from clv_platform.ingestion.assets import raw_klaviyo_profiles, raw_shopify_orders
from clv_platform.ingestion.file_assets import raw_file_transactions
from clv_platform.marts.assets import MART_ASSETS, MART_CHECKS
from clv_platform.models.clv_assets import CLV_ASSETS
from clv_platform.models.npd_assets import NPD_ASSETS
from clv_platform.models.segment_assets import SEGMENT_ASSETS
from clv_platform.monitoring.assets import MONITORING_ASSETS
from clv_platform.resources.demo import DemoStoreResource, NoProfilesResource
from clv_platform.resources.storage import duckdb_config, duckdb_path
from clv_platform.transforms.features_assets import customer_features
from clv_platform.transforms.staging_assets import staging_tables

ASSETS = [
    raw_shopify_orders,
    raw_klaviyo_profiles,
    raw_file_transactions,
    staging_tables,
    customer_features,
    *CLV_ASSETS,
    *NPD_ASSETS,
    *SEGMENT_ASSETS,
    *MONITORING_ASSETS,
    *MART_ASSETS,
    *ACTIVATION_ASSETS,
]


def source_resources() -> dict[str, dg.ConfigurableResource]:
    """Live clients where credentials are set, the demo store otherwise."""
    demo = DemoStoreResource(
        n_customers=int(os.environ.get("CLV_DEMO_CUSTOMERS", "5000")),
        seed=int(os.environ.get("CLV_DEMO_SEED", "42")),
    )
    from clv_platform.resources.shopify import DEFAULT_API_VERSION, credential_settings, has_credentials

    shopify_live = has_credentials(os.environ)
    klaviyo_live = bool(os.environ.get("KLAVIYO_API_KEY"))
    resources: dict[str, dg.ConfigurableResource] = {"shopify": demo, "klaviyo": demo}
    if shopify_live:
        from clv_platform.resources.shopify import ShopifyResource

        resources["shopify"] = ShopifyResource(
            shop_domain=dg.EnvVar("SHOPIFY_SHOP_DOMAIN"),
            **credential_settings(os.environ),  # client credentials (Dev Dashboard app) or legacy token
            api_version=os.environ.get("SHOPIFY_API_VERSION", DEFAULT_API_VERSION),
        )
        resources["klaviyo"] = NoProfilesResource()
    if klaviyo_live:
        from clv_platform.resources.klaviyo import KlaviyoResource

        resources["klaviyo"] = KlaviyoResource(api_key=dg.EnvVar("KLAVIYO_API_KEY"))
    return resources


def build_definitions(database: str | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[*checks_for(ASSETS), *MART_CHECKS],
        jobs=[
            full_refresh_job,
            refresh_everything_job,
            import_file_job,
            rebuild_from_staging_job,
            *SCHEDULED_JOBS,
            *MONITORING_JOBS,
            activate_now_job,
        ],
        schedules=SCHEDULES,
        sensors=[inbox_file_sensor, rebuild_after_import_sensor, *MONITORING_SENSORS],
        resources={
            "duckdb": DuckDBResource(database=database or str(duckdb_path()), connection_config=duckdb_config()),
            **source_resources(),
            "activation": activation_resource(),
        },
        # One process per run: DuckDB allows one writer, so steps must not open the file in parallel.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
