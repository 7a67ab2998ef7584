"""`ml.model_registry`: a readable view of `ml.model_runs` saying which version is served.

Per model name, the newest registered run (by `trained_at`, then version) is `served` - what
scoring loads -, older registered runs are `registered` (what a rollback would serve) and runs
that failed the registration gate are `candidate`. The validation metrics are pulled out of the
JSON into columns. The view is built from the columns `ml.model_runs` has when it is created, and
keeps every other column (`r.* exclude (...)`), so a registry with added columns still works.
"""

from __future__ import annotations

import duckdb

from clv_platform.resources.storage import table_exists

VIEW = "ml.model_registry"
METRIC_COLUMNS = ("mae", "rmse", "normalized_gini", "spearman", "interval_coverage", "coverage")


def create_model_registry_view(conn: duckdb.DuckDBPyConnection) -> bool:
    """(Re)create the view over ml.model_runs; False (and nothing created) when there is no registry."""
    if not table_exists(conn, "ml.model_runs"):
        return False
    present = {
        c for (c,) in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'ml' and table_name = 'model_runs'"
        ).fetchall()
    }
    name = "model_name" if "model_name" in present else "'model'"
    order = ", ".join(f"{c} desc" for c in ("trained_at", "model_version") if c in present) or "1"
    if "is_registered" in present:
        status = (
            "case when not coalesce(is_registered, false) then 'candidate' "
            f"when row_number() over (partition by {name}, coalesce(is_registered, false) order by {order}) = 1 "
            "then 'served' else 'registered' end"
        )
    else:
        status = "'unknown'"
    metrics = []
    if "metrics" in present:
        metrics = [
            f"try_cast(json_extract_string(metrics, '$.{m}') as double) as {m}"
            for m in METRIC_COLUMNS if m not in present
        ]
    first = [c for c in ("model_name", "model_version") if c in present]
    conn.execute(
        f"create or replace view {VIEW} as select "
        + ", ".join([*first, f"{status} as status", *metrics,
                     "r.*" + (f" exclude ({', '.join(first)})" if first else "")])
        + f" from ml.model_runs r order by {name}, {order}"
    )
    return True
