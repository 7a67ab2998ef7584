"""The platform's asset convention, stated once: an asset's group is the layer its key names
(the key ``ml/clv_model`` is in group ``ml``, which test_definitions asserts) and the data-science
team owns it. A declaration then says only what is its own: key, inputs, kinds, description."""

import dagster as dg

OWNERS = ["team:data-science"]


def layer_spec(key: dg.AssetKey, **kwargs) -> dg.AssetSpec:
    """An ``AssetSpec`` (of a multi-asset, or a table written outside a run) in its layer's group."""
    return dg.AssetSpec(key, group_name=key.path[0], owners=OWNERS, **kwargs)


def layer_asset(key: dg.AssetKey, **kwargs):
    """``dg.asset`` in its layer's group; the docstring stays the description, as with ``dg.asset``."""
    return dg.asset(key=key, group_name=key.path[0], owners=OWNERS, **kwargs)


def side_table_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    """A DuckDB table written outside its own asset's run (by other assets, or by a sensor): listed
    in the catalog but not executable; its writers report each write as a materialization."""
    return layer_spec(key, kinds={"duckdb"}, description=description)
