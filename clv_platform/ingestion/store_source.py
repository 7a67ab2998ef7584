"""Which store a database holds (`meta.platform`), and the guard every writing run passes first.

A database holds exactly one store: the demo store, one live Shopify shop, or a files-only store
fed from the inbox. The first run writes the source to `meta.platform`; every later run whose
`CLV_SOURCE` differs fails before it reads or writes anything, naming the setting. Nothing here
ever deletes a raw row: a mismatch is the user's to resolve (another `CLV_DUCKDB_PATH`, or the
right `CLV_SOURCE`), because raw history may be impossible to fetch again.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import duckdb

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.settings import Settings, store_mismatch_message

META_TABLE = "meta.platform"

# raw.*.source values each store writes.
_RAW_SOURCES = {
    "demo": {"demo"},
    "shopify": {"shopify", "klaviyo"},
    "files": set(),
}


class SourceMismatchError(RuntimeError):
    """The database holds another store than `CLV_SOURCE` names."""


def ensure_meta_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("create schema if not exists meta")
    conn.execute(
        f"""
        create table if not exists {META_TABLE} (
            source varchar not null,
            created_at timestamp not null,
            shop_timezone varchar
        )
        """
    )


def recorded_source(conn: duckdb.DuckDBPyConnection) -> str | None:
    exists = conn.execute(
        "select count(*) from information_schema.tables where table_schema = 'meta' and table_name = 'platform'"
    ).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(f"select source from {META_TABLE} limit 1").fetchone()
    return row[0] if row else None


def shop_timezone(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The shop's IANA time zone: as stored in `meta.platform`, else as Shopify reported it
    (`raw.shopify_shop`, written by every orders load), else None."""
    for sql in (f"select shop_timezone from {META_TABLE} limit 1",
                "select iana_timezone from raw.shopify_shop order by fetched_at desc limit 1"):
        try:
            row = conn.execute(sql).fetchone()
        except duckdb.CatalogException:
            continue
        if row and row[0]:
            return row[0]
    return None


def _inferred_source(conn: duckdb.DuckDBPyConnection) -> str | None:
    """For a database written before `meta.platform` existed: the store its raw rows come from."""
    sources = {
        s for (s,) in conn.execute(
            "select distinct source from raw.shopify_orders union select distinct source from raw.klaviyo_profiles"
        ).fetchall()
    }
    if sources & {"shopify", "klaviyo"}:
        return "shopify"
    if "demo" in sources:
        return "demo"
    if conn.execute("select count(*) from raw.file_transactions").fetchone()[0]:
        return "files"
    return None


def _mismatch(database: str, held: str, wanted: str) -> SourceMismatchError:
    return SourceMismatchError(store_mismatch_message(database, held, wanted))


def ensure_store_source(conn: duckdb.DuckDBPyConnection, settings: Settings) -> str:
    """Record the database's source on first use; fail with `SourceMismatchError` when it differs."""
    ensure_raw_tables(conn)
    ensure_meta_table(conn)
    wanted = settings.source
    held = recorded_source(conn)
    if held is None:
        held = _inferred_source(conn) or wanted
        if held != wanted:
            raise _mismatch(str(settings.duckdb_path), held, wanted)
        conn.execute(
            f"insert into {META_TABLE} (source, created_at) values (?, ?)",
            [wanted, datetime.now(timezone.utc).replace(tzinfo=None)],
        )
        return wanted
    if held != wanted:
        raise _mismatch(str(settings.duckdb_path), held, wanted)
    return held


def raw_sources_of(source: str) -> set[str]:
    """The `source` values the raw API tables may hold for a store."""
    return set(_RAW_SOURCES[source])


def fail_unless_store_matches(resource, settings: Settings, context: str = "") -> None:
    """Run `ensure_store_source` on the asset's DuckDB resource and turn a mismatch into a
    non-retryable `dg.Failure` (retrying cannot change which store the database holds).

    The failure is raised after the connection block: `DuckDBResource.get_connection` does not
    close its connection on an exception. `context` prefixes the message (e.g. the file name).
    """
    mismatch = None
    with resource.get_connection() as conn:
        try:
            ensure_store_source(conn, settings)
        except SourceMismatchError as exc:
            mismatch = str(exc)
    if mismatch:
        raise dg.Failure(description=f"{context}{mismatch}", allow_retries=False)
