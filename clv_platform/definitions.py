"""The clv_platform code location: the one place that decides which store and systems are used.

`load_settings()` (clv_platform/settings.py) is read once here. `CLV_SOURCE` picks the store:
`demo` (default; the built-in demo store, in data/demo.duckdb), `shopify` (the live shop,
`SHOPIFY_SHOP_DOMAIN` + `SHOPIFY_CLIENT_ID`/`SHOPIFY_CLIENT_SECRET` of a Dev Dashboard app, or a
legacy `SHOPIFY_ACCESS_TOKEN`; optionally `KLAVIYO_API_KEY`; data/clv.duckdb) or
`files` (exports dropped into data/inbox only; data/files.duckdb). Missing live credentials are an
error of the live run, never a switch to the demo. Secrets are bound with `EnvVar`, so their
values are read at run time and never shown in the UI. The settings travel to every asset,
check and sensor inside the `duckdb` resource (`StorageResource`).
"""

import dagster as dg

from clv_platform.activation.assets import ACTIVATION_ASSETS
from clv_platform.activation.settings import activation_resource
from clv_platform.automation.freshness import with_freshness
from clv_platform.automation.jobs import (
    activate_now_job,
    full_rebuild_job,
    full_refresh_job,
    import_file_job,
    rebuild_and_train_job,
    rebuild_from_staging_job,
    refresh_everything_job,
    retrain_models_job,
)
from clv_platform.automation.monitoring_sensors import MONITORING_SENSORS, MONITORING_TABLE_SPECS
from clv_platform.automation.schedules import JOBS as SCHEDULED_JOBS
from clv_platform.automation.schedules import SCHEDULES
from clv_platform.automation.sensors import inbox_file_sensor, rebuild_after_import_sensor
from clv_platform.checks import checks_for
from clv_platform.ingestion.assets import raw_klaviyo_profiles, raw_shopify_orders
from clv_platform.ingestion.file_assets import raw_file_transactions
from clv_platform.marts.assets import MART_ASSETS, MART_CHECKS
from clv_platform.models.clv_assets import CLV_ASSETS
from clv_platform.models.npd_assets import NPD_ASSETS
from clv_platform.models.npd_score_assets import NPD_SCORE_ASSETS
from clv_platform.models.registry import MODEL_RUNS_SPEC
from clv_platform.models.stored_fits import STORED_FITS_SPEC
from clv_platform.models.segment_assets import SEGMENT_ASSETS
from clv_platform.monitoring.assets import MONITORING_ASSETS
from clv_platform.ingestion.source_resources import (
    DemoStoreResource,
    FilesOnlyResource,
    MissingCredentialsResource,
    NoProfilesResource,
)
from clv_platform.resources.storage import StorageResource
from clv_platform.settings import Settings, load_settings, with_database
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
    *NPD_SCORE_ASSETS,
    *SEGMENT_ASSETS,
    *MONITORING_ASSETS,
    *MART_ASSETS,
    *ACTIVATION_ASSETS,
]
# Every asset check of the code location; a job that selects an asset runs its checks too, so the
# benches time them with the assets (benchmarks/nightly.py, bench.py).
ASSET_CHECKS = [*checks_for(ASSETS), *MART_CHECKS]
# Tables written outside an asset's own run (the registry index by both training assets, the run
# failures by a sensor): declared so the catalog lists them, not executable.
TABLE_SPECS = [MODEL_RUNS_SPEC, STORED_FITS_SPEC, *MONITORING_TABLE_SPECS]


def source_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The `shopify` and `klaviyo` clients of the store `CLV_SOURCE` names."""
    if settings.source == "demo":
        demo = DemoStoreResource(
            n_customers=settings.demo_customers,
            seed=settings.demo_seed,
            end_date=settings.demo_end_date().isoformat(),
        )
        return {"shopify": demo, "klaviyo": demo}
    if settings.source == "files":
        return {"shopify": FilesOnlyResource(), "klaviyo": FilesOnlyResource()}
    resources: dict[str, dg.ConfigurableResource] = {}
    if settings.has_shopify_credentials:
        from clv_platform.resources.shopify import ShopifyResource, shopify_credentials

        resources["shopify"] = ShopifyResource(
            shop_domain=dg.EnvVar("SHOPIFY_SHOP_DOMAIN"),
            # client credentials (Dev Dashboard app) or a legacy token; names only, values at run time
            **shopify_credentials(settings.shopify_uses_client_credentials),
            api_version=settings.shopify_api_version,
        )
    else:
        resources["shopify"] = MissingCredentialsResource(
            missing_credentials="SHOPIFY_SHOP_DOMAIN and SHOPIFY_CLIENT_ID / SHOPIFY_CLIENT_SECRET (or SHOPIFY_ACCESS_TOKEN)"
        )
    if settings.has_klaviyo_key:
        from clv_platform.resources.klaviyo import KlaviyoResource

        resources["klaviyo"] = KlaviyoResource(api_key=dg.EnvVar("KLAVIYO_API_KEY"))
    else:
        resources["klaviyo"] = NoProfilesResource()
    return resources


def build_definitions(database: str | None = None, settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    if database:
        settings = with_database(settings, database)
    return dg.Definitions(
        assets=[*with_freshness(ASSETS), *TABLE_SPECS],
        asset_checks=ASSET_CHECKS,
        jobs=[
            full_refresh_job,
            refresh_everything_job,
            import_file_job,
            rebuild_from_staging_job,
            rebuild_and_train_job,
            full_rebuild_job,
            retrain_models_job,
            *SCHEDULED_JOBS,
            activate_now_job,
        ],
        schedules=SCHEDULES,
        sensors=[inbox_file_sensor, rebuild_after_import_sensor, *MONITORING_SENSORS],
        resources={
            "duckdb": StorageResource.from_settings(settings),
            **source_resources(settings),
            "activation": activation_resource(),
        },
        # One process per run: DuckDB allows one writer, so steps must not open the file in parallel.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
