"""The "as of" date every feature, model and score is computed at.

By default it is the last day with orders in staging: a store's data (and the demo
store's, which ends on a fixed date) is complete up to there. `CLV_AS_OF=YYYY-MM-DD`
pins it, e.g. to re-score the past.
"""

import os
from datetime import date

import duckdb


def scoring_cutoff(conn: duckdb.DuckDBPyConnection) -> date:
    pinned = os.environ.get("CLV_AS_OF")
    if pinned:
        return date.fromisoformat(pinned)
    value = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
    if value is None:
        raise ValueError("staging.orders is empty: there is nothing to compute features as of")
    return value
