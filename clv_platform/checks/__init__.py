"""Asset checks of every layer, in one place: raw/staging, features, models and scores.

`ALL_CHECKS` is what the code location registers, through `checks_for(ASSETS)`: a check whose
asset is not among the given definitions (a typo in its key, an asset renamed or removed) raises
there instead of being dropped, since Dagster would otherwise invent a stub asset for its key or
the check would silently never run.
"""

from collections.abc import Iterable

import dagster as dg

from clv_platform.checks.feature_checks import FEATURE_CHECKS
from clv_platform.checks.model_checks import MODEL_CHECKS
from clv_platform.checks.score_checks import SCORE_CHECKS
from clv_platform.checks.staging_checks import STAGING_CHECKS

ALL_CHECKS: list[dg.AssetChecksDefinition] = [*STAGING_CHECKS, *FEATURE_CHECKS, *MODEL_CHECKS, *SCORE_CHECKS]


class UnknownCheckTarget(ValueError):
    """A declared asset check targets an asset key no given asset definition has."""


def checks_for(assets: Iterable) -> list[dg.AssetChecksDefinition]:
    """Every check of `ALL_CHECKS`, once each of its targets is checked to be one of `assets`.

    `assets` are asset definitions or specs (every asset of the code location). Raises
    `UnknownCheckTarget` naming the check and the key when a check targets none of them.
    """
    keys: set[dg.AssetKey] = set()
    for asset in assets:
        keys |= set(getattr(asset, "keys", None) or [asset.key])
    unknown = sorted(
        f"{k.name} on {k.asset_key.to_user_string()}"
        for check in ALL_CHECKS for k in check.check_keys if k.asset_key not in keys
    )
    if unknown:
        raise UnknownCheckTarget(f"asset checks target assets that are not defined: {', '.join(unknown)}")
    return list(ALL_CHECKS)


__all__ = ["ALL_CHECKS", "UnknownCheckTarget", "checks_for"]
