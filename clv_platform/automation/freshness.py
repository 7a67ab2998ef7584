"""How fresh each asset is expected to be, as named Dagster freshness policies.

The schedules say when runs start; these policies say what the store owner can rely on, and the UI
flags an asset that missed it (whatever the cause: a failed run, a stopped schedule, a queue).
They follow `config.toml`: everything the nightly refresh rebuilds is expected within a day (plus
slack for the run itself), the trained models within a week. A policy is attached only while its
schedule is set to run, so a schedule the owner turned off never shows assets as overdue.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import dagster as dg

from clv_platform.automation.schedules import load_config
from clv_platform.models.clv_assets import CLV_MODEL_KEY, FEATURE_IMPORTANCE, FEATURE_INTERACTIONS
from clv_platform.models.npd_assets import NPD_MODEL_KEY

# Rebuilt by the nightly refresh: warn when a night was missed, fail after a day and a quarter.
NIGHTLY = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=30), warn_window=timedelta(hours=26))
# Retrained by the weekly retrain (or earlier, on drift).
WEEKLY = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7, hours=6))

# The SHAP tables are written with the CLV model, so they are as fresh as it is.
WEEKLY_KEYS = {CLV_MODEL_KEY, FEATURE_IMPORTANCE, FEATURE_INTERACTIONS, NPD_MODEL_KEY}
# raw/* are partitioned fetches judged by their partitions, activation/* runs on demand.
UNPOLICED_LAYERS = {"raw", "activation"}


def policy_for(key: dg.AssetKey, config: dict) -> dg.FreshnessPolicy | None:
    """The named policy of one asset under the automation `config` (None: no expectation)."""
    if key.path[0] in UNPOLICED_LAYERS:
        return None
    if key in WEEKLY_KEYS:
        return WEEKLY if config["weekly_retrain"].get("running", True) else None
    return NIGHTLY if config["nightly_refresh"].get("running", True) else None


def with_freshness(assets: Iterable[dg.AssetsDefinition], config: dict | None = None) -> list[dg.AssetsDefinition]:
    """`assets` with each spec's freshness policy set from `policy_for`."""
    config = config or load_config()
    return list(
        dg.map_asset_specs(
            lambda spec: spec.replace_attributes(freshness_policy=policy_for(spec.key, config)),
            assets,
        )
    )
