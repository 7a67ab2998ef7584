"""Reading a Dagster run result in tests."""

from __future__ import annotations

import dagster as dg


def materialization_metadata(result, key: tuple[str, ...]) -> dict:
    """The plain metadata values of the first materialization of asset ``key`` in ``result``."""
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(list(key)))
    return {k: v.value for k, v in event.materialization.metadata.items()}
