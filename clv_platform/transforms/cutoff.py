"""The "as of" date every feature, model and score is computed at, decided by the store itself.

* `CLV_AS_OF=YYYY-MM-DD` pins it (e.g. to re-score the past).
* A files-only store: the last order date of the store's own file rows.
* A live Shopify store: the last complete day in the shop's time zone (the zone a connector
  stored in `meta.platform`, else `[store] timezone` of store.toml, else UTC).
* The demo store: its last day with orders (its history ends the day before the run).

The store is the one `meta.platform` records for this database, so another source can never
move the date (see `ingestion/store_source.py`).
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from clv_platform.ingestion.store_source import recorded_source, shop_timezone
from clv_platform.settings import Settings, load_settings


def cutoff_and_rule(
    conn: duckdb.DuckDBPyConnection, settings: Settings | None = None, now: datetime | None = None
) -> tuple[date, str]:
    """The as-of date and a sentence saying where it comes from (for asset metadata)."""
    settings = settings or load_settings()
    if settings.as_of is not None:
        return settings.as_of, f"pinned by CLV_AS_OF={settings.as_of.isoformat()}"
    source = recorded_source(conn)
    if source is None:  # a database written before meta.platform records no source: its newest order day
        value = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
        if value is None:
            raise ValueError("staging.orders is empty: there is nothing to compute features as of")
        return value, "last day with orders in staging"
    if source == "shopify":
        tz = shop_timezone(conn) or settings.store_timezone
        day = settings.last_complete_day(now, tz)
        return day, f"last complete day in the shop's time zone ({tz})"
    where = "where source = 'file'" if source == "files" else "where source <> 'file'"
    value = conn.execute(f"select max(order_date) from staging.orders {where}").fetchone()[0]
    if value is None:
        raise ValueError(
            f"staging.orders holds no orders of the '{source}' store: there is nothing to compute features as of"
            + (_rejected_file_rows(conn) if source == "files" else "")
        )
    rule = "last order date of the store's imported files" if source == "files" else "last day of the demo store"
    return value, rule


def _rejected_file_rows(conn: duckdb.DuckDBPyConnection) -> str:
    """Why a files-only store has no orders, when the cleaning rules rejected its rows (a file of
    day numbers, of another currency, ...): their count and most frequent reasons, else ''."""
    try:
        total, reasons = conn.execute("""
            with r as (select split_part(reason, ':', 1) as kind, min(reason) as example, count(*) as n
                       from staging.rejected_rows where source_table = 'raw.file_transactions' group by 1)
            select sum(n), list(kind || ' (' || n || case when n = 1 then ' row' else ' rows' end
                                || ', e.g. ' || example || ')' order by n desc, kind)[:3]
            from r""").fetchone()
    except duckdb.Error:
        return ""
    if not total:
        return ""
    return f"; the cleaning rules rejected {total} imported rows (staging.rejected_rows): " + "; ".join(reasons)


def scoring_cutoff(conn: duckdb.DuckDBPyConnection, settings: Settings | None = None) -> date:
    return cutoff_and_rule(conn, settings)[0]
