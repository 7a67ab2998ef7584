"""Asset jobs: what the schedules, sensors and the UI launch."""

import dagster as dg

raw_and_downstream = (
    dg.AssetSelection.assets(["raw", "shopify_orders"], ["raw", "klaviyo_profiles"]).downstream()
)

# The nightly/full refresh: API ingestion and everything below it (file imports have their own job).
full_refresh_job = dg.define_asset_job(
    name="full_refresh",
    selection=raw_and_downstream,
    description="Ingest Shopify + Klaviyo, rebuild staging and everything downstream.",
)

# What the inbox sensor launches for each new file: that file's rows, then staging and below.
import_file_job = dg.define_asset_job(
    name="import_inbox_file",
    selection=dg.AssetSelection.assets(["raw", "file_transactions"]),
    description="Import one transaction export from data/inbox into raw.file_transactions.",
)

rebuild_from_staging_job = dg.define_asset_job(
    name="rebuild_from_staging",
    selection=dg.AssetSelection.groups("staging").downstream(),
    description="Rebuild staging and everything downstream from the raw tables already loaded.",
)
