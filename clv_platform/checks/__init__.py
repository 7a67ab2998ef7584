"""Asset checks of every layer, in one place: raw/staging, features, models and scores.

`ALL_CHECKS` is what the code location registers. A check whose asset is not (yet) defined
would make Dagster invent a stub asset for its key, so `checks_for(assets)` keeps only the checks
whose target is among the given asset definitions.
"""

from collections.abc import Iterable

import dagster as dg

from clv_platform.checks.feature_checks import FEATURE_CHECKS
from clv_platform.checks.model_checks import MODEL_CHECKS
from clv_platform.checks.score_checks import SCORE_CHECKS
from clv_platform.checks.staging_checks import STAGING_CHECKS

ALL_CHECKS: list[dg.AssetChecksDefinition] = [*STAGING_CHECKS, *FEATURE_CHECKS, *MODEL_CHECKS, *SCORE_CHECKS]


def checks_for(assets: Iterable) -> list[dg.AssetChecksDefinition]:
    """The checks of `ALL_CHECKS` whose asset is one of `assets` (asset definitions or specs)."""
    keys: set[dg.AssetKey] = set()
    for asset in assets:
        keys |= set(getattr(asset, "keys", None) or [asset.key])
    return [check for check in ALL_CHECKS if {k.asset_key for k in check.check_keys} <= keys]


__all__ = ["ALL_CHECKS", "checks_for"]
