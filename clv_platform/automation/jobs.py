"""Asset jobs: what the schedules, sensors, `make demo` and the UI launch."""

import dagster as dg

from clv_platform.ingestion.assets import RAW_KLAVIYO_PROFILES, RAW_SHOPIFY_ORDERS
from clv_platform.ingestion.file_assets import RAW_FILE_TRANSACTIONS
from clv_platform.models.clv_assets import CLV_MODEL_KEY
from clv_platform.models.npd_assets import NPD_MODEL_KEY

API_RAW = dg.AssetSelection.assets(RAW_SHOPIFY_ORDERS, RAW_KLAVIYO_PROFILES)
# Model training: weekly (or on drift), not every night, so that nightly scores come from the
# registered model and the drift monitor compares today's data with what that model learned from.
# The models' multi-assets come whole (the SHAP tables are written with ml/clv_model), so subtracting
# this selection never leaves a part of a multi-asset that cannot run alone.
MODEL_TRAINING = dg.AssetSelection.assets(CLV_MODEL_KEY, NPD_MODEL_KEY).required_multi_asset_neighbors()

full_refresh_job = dg.define_asset_job(
    name="full_refresh",
    selection=API_RAW.downstream() - MODEL_TRAINING,
    description="Ingest Shopify + Klaviyo, rebuild staging and features, score with the registered models, "
    "monitor drift, rebuild the marts and publish the analyst snapshot.",
)

refresh_everything_job = dg.define_asset_job(
    name="refresh_everything",
    selection=API_RAW.downstream(),
    description="Everything from ingestion to the analyst snapshot, including model training "
    "(what `make demo` runs; the UI's one-click full refresh).",
)

# What the inbox sensor launches for each new file: that file's rows.
import_file_job = dg.define_asset_job(
    name="import_inbox_file",
    selection=dg.AssetSelection.assets(RAW_FILE_TRANSACTIONS),
    description="Import one transaction export from data/inbox into raw.file_transactions.",
)

# One retrain job for both triggers: the weekly schedule (`weekly_retrain`) and the drift sensor
# (`drift_retrain_sensor`, one run per flagged drift run). It does not select the monitoring group,
# so a retrain never produces a new drift run by itself: no retrain loop.
retrain_models_job = dg.define_asset_job(
    name="retrain_models",
    selection=dg.AssetSelection.groups("features", "ml", "scores", "marts"),
    description="Recompute features, retrain and register the models, re-score every customer, rebuild the "
    "marts and the snapshot (weekly schedule, or launched on drift).",
)

rebuild_from_staging_job = dg.define_asset_job(
    name="rebuild_from_staging",
    selection=dg.AssetSelection.groups("staging").downstream() - MODEL_TRAINING,
    description="Rebuild staging and everything downstream (scoring with the registered models) "
    "from the raw tables already loaded.",
)

# The same selection with staging rebuilt from all of raw instead of merged (transforms/staging.py):
# after a change to the staging SQL, or to prove a merged store equals a rebuilt one.
full_rebuild_job = dg.define_asset_job(
    name="full_rebuild",
    selection=dg.AssetSelection.groups("staging").downstream() - MODEL_TRAINING,
    config={"ops": {"staging_tables": {"config": {"full_rebuild": True}}}},
    description="Rebuild every staging table from all the raw rows (not only the new ones) and everything "
    "downstream, scoring with the registered models.",
)

# Issue 23: write the scores back to Klaviyo / Shopify by hand (the nightly full_refresh runs the
# same assets after the snapshot). Each asset does nothing unless activation.toml turns it on.
activate_now_job = dg.define_asset_job(
    name="activate_now",
    selection=dg.AssetSelection.groups("activation"),
    description="Write the current scores to Klaviyo profiles and Shopify customers (dry run unless "
    "activation.toml sets mode = \"live\"); reads marts.customer_scores as it is.",
)


# The rebuild after an import when the store has no trained models yet (a files-only store's
# first import): the same as rebuild_from_staging plus training and registering the models.
rebuild_and_train_job = dg.define_asset_job(
    name="rebuild_and_train",
    selection=dg.AssetSelection.groups("staging").downstream(),
    description="Rebuild staging and everything downstream from the raw tables already loaded, training and "
    "registering the models (what a files-only store runs after its first import, and `clv-platform files`).",
)
