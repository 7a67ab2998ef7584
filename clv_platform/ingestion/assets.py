"""raw/* assets: Shopify orders (daily partitions of `updatedAt`) and Klaviyo profiles.

Writes are idempotent and crash-safe: each chunk of partitions is fetched in full,
then its rows are deleted and re-inserted in one DuckDB transaction. A run killed
mid-way leaves only whole chunks behind, and rerunning rewrites them identically.

Before anything is fetched, the database's recorded store must match `CLV_SOURCE`
(`store_source.ensure_store_source`); rows of another source are never deleted. A files-only
store has no API ingestion: these assets then record that they did nothing.
"""

import json
from dataclasses import replace
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.ingestion.store_source import SourceMismatchError, ensure_store_source
from clv_platform.resources.demo import DemoStoreResource
from clv_platform.resources.storage import StorageResource, settings_of
from clv_platform.settings import Settings, load_settings

ORDERS_START_DATE = load_settings().orders_start_date

shopify_daily_partitions = dg.DailyPartitionsDefinition(start_date=ORDERS_START_DATE)

# Partitions fetched and committed together; small enough that a crash loses little work.
CHUNK_DAYS = 31
# Bigger ranges than this go through a Shopify bulk operation instead of paging.
BULK_THRESHOLD_DAYS = 90


def _source_label(resource: dg.ConfigurableResource, live: str) -> str:
    return "demo" if isinstance(resource, DemoStoreResource) else live


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)


def _chunks(start: datetime, end: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        nxt = min(cursor + timedelta(days=days), end)
        yield cursor, nxt
        cursor = nxt


def order_frame(nodes: Iterable[dict], source: str, ingested_at: datetime) -> pd.DataFrame:
    """Rows of raw.shopify_orders for a batch of order nodes (payload kept verbatim)."""
    rows = []
    for node in nodes:
        updated = node.get("updatedAt")
        updated_at = _parse_ts(updated) if isinstance(updated, str) else None
        rows.append(
            {
                "order_id": node.get("id"),
                "updated_at": updated_at,
                "partition_date": updated_at.date() if updated_at else None,
                "payload": json.dumps(node, separators=(",", ":")),
                "source": source,
                "ingested_at": ingested_at,
            }
        )
    return pd.DataFrame(
        rows, columns=["order_id", "updated_at", "partition_date", "payload", "source", "ingested_at"]
    )


def _store_settings(duckdb: DuckDBResource, client: dg.ConfigurableResource) -> Settings:
    """The settings of this run; a plain `DuckDBResource` (a test's own) takes the store from the client."""
    settings = settings_of(duckdb)
    if not isinstance(duckdb, StorageResource):
        name = getattr(client, "source_name", "shopify")
        settings = replace(settings, source=name if name in ("demo", "files") else "shopify")
    return settings


def _guard_source(context, duckdb: DuckDBResource, client: dg.ConfigurableResource) -> Settings:
    """Fail before touching anything when the database holds another store or live credentials are missing."""
    settings = _store_settings(duckdb, client)
    mismatch = None
    # Raised after the block: DuckDBResource.get_connection does not close on an exception.
    with duckdb.get_connection() as conn:
        try:
            ensure_store_source(conn, settings)
        except SourceMismatchError as exc:
            mismatch = str(exc)
    if mismatch:
        raise dg.Failure(description=mismatch, allow_retries=False)
    if settings.source == "shopify" and getattr(client, "missing_credentials", None):
        raise dg.Failure(
            description=f"CLV_SOURCE=shopify but {client.missing_credentials} not set: the live store cannot be "
            "fetched. Set them (see README, 'Pointing the platform at a real store'); the raw rows already loaded are kept as they are.",
            allow_retries=False,
        )
    return settings


def _skipped_for_files(table: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"source": "files", "skipped": f"CLV_SOURCE=files: {table} is not used by a files-only store"}
    )


def _preview(conn, sql: str, params: list | None = None) -> dg.MetadataValue:
    return dg.MetadataValue.md(conn.execute(sql, params or []).df().to_markdown(index=False))


@dg.asset(
    key=["raw", "shopify_orders"],
    group_name="raw",
    partitions_def=shopify_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"shopify", "duckdb"},
    owners=["team:data-engineering"],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_shopify_orders(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, shopify: dg.ConfigurableResource
) -> dg.MaterializeResult:
    """Shopify order nodes as received, one row per order version, partitioned by day of `updatedAt`.

    Re-running a partition (or a range, in one run) replaces exactly its rows.
    """
    window = context.partition_time_window
    start = window.start.astimezone(timezone.utc).replace(tzinfo=None)
    end = window.end.astimezone(timezone.utc).replace(tzinfo=None)
    settings = _guard_source(context, duckdb, shopify)
    if settings.source == "files":
        return _skipped_for_files("raw.shopify_orders")
    source = _source_label(shopify, "shopify")
    ingested_at = datetime.now(timezone.utc).replace(tzinfo=None)
    use_bulk = hasattr(shopify, "bulk_orders") and (end - start).days > BULK_THRESHOLD_DAYS

    total = 0
    if use_bulk:
        context.log.info(f"{start:%Y-%m-%d}..{end:%Y-%m-%d}: first full load through a bulk operation")
        nodes = [n for n in shopify.bulk_orders(start, context.log) if _in_window(n, start, end)]
        total += _replace_window(duckdb, start, end, order_frame(nodes, source, ingested_at), source)
    else:
        for chunk_start, chunk_end in _chunks(start, end, CHUNK_DAYS):
            nodes = shopify.iter_orders(chunk_start, chunk_end, context.log)
            written = _replace_window(
                duckdb, chunk_start, chunk_end, order_frame(nodes, source, ingested_at), source
            )
            total += written
            context.log.info(f"{chunk_start:%Y-%m-%d}..{chunk_end:%Y-%m-%d}: {written} order versions")

    with duckdb.get_connection() as conn:
        stats = conn.execute(
            """
            select count(*), count(distinct order_id), min(updated_at), max(updated_at)
            from raw.shopify_orders where partition_date >= ? and partition_date < ?
            """,
            [start.date(), end.date()],
        ).fetchone()
        table_rows = conn.execute("select count(*) from raw.shopify_orders").fetchone()[0]
        preview = _preview(
            conn,
            """
            select order_id, updated_at, partition_date, source, left(payload::varchar, 80) as payload
            from raw.shopify_orders where partition_date >= ? and partition_date < ?
            order by updated_at limit 5
            """,
            [start.date(), end.date()],
        )
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "window": f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}",
            "fetch_mode": "bulk operation" if use_bulk else "paged",
            "dagster/row_count": int(table_rows),
            "rows_in_window": int(stats[0]),
            "orders_in_window": int(stats[1]),
            "min_updated_at": str(stats[2]),
            "max_updated_at": str(stats[3]),
            "preview": preview,
        }
    )


def _in_window(node: dict, start: datetime, end: datetime) -> bool:
    updated = node.get("updatedAt")
    if not isinstance(updated, str):
        return True  # keep it: staging rejects it with a reason instead of it vanishing here
    return start <= _parse_ts(updated) < end


def _replace_window(duckdb: DuckDBResource, start: datetime, end: datetime, frame: pd.DataFrame, source: str) -> int:
    """Delete the window's partitions and insert the fetched rows, atomically.

    Rows whose `updatedAt` is unparseable carry no partition date; they are stored under the
    window's first day so that they are replaced by the same rerun and reach staging's
    rejected rows.
    """
    frame = frame.copy()
    frame["partition_date"] = frame["partition_date"].where(frame["partition_date"].notna(), start.date())
    with duckdb.get_connection() as conn:
        conn.execute("begin transaction")
        try:
            conn.execute(
                "delete from raw.shopify_orders where partition_date >= ? and partition_date < ? and source = ?",
                [start.date(), end.date(), source],
            )
            conn.register("_orders_batch", frame)
            conn.execute(
                """
                insert into raw.shopify_orders
                select order_id, updated_at, partition_date, payload::json, source, ingested_at
                from _orders_batch
                """
            )
            conn.unregister("_orders_batch")
            conn.execute("commit")
        except Exception:
            conn.execute("rollback")
            raise
    return len(frame)


PROFILE_BATCH = 5000


@dg.asset(
    key=["raw", "klaviyo_profiles"],
    group_name="raw",
    kinds={"klaviyo", "duckdb"},
    owners=["team:data-engineering"],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_klaviyo_profiles(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, klaviyo: dg.ConfigurableResource
) -> dg.MaterializeResult:
    """Klaviyo profiles as received, loaded incrementally from the last `updated` already stored.

    Profiles arrive sorted by `updated`, and every batch is committed on its own, so the
    stored maximum is a safe resume point after a crash; a re-fetched version replaces itself.
    """
    settings = _guard_source(context, duckdb, klaviyo)
    if settings.source == "files":
        return _skipped_for_files("raw.klaviyo_profiles")
    source = _source_label(klaviyo, "klaviyo")
    ingested_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        ensure_raw_tables(conn)
        watermark = conn.execute(
            "select max(updated_at) from raw.klaviyo_profiles where source = ?", [source]
        ).fetchone()[0]
    # Step back one second: profiles sharing the watermark second may not all be stored yet.
    updated_after = watermark - timedelta(seconds=1) if watermark else None
    context.log.info(f"fetching profiles updated after {updated_after or 'the beginning'}")

    fetched = 0
    batch: list[dict] = []
    for profile in klaviyo.iter_profiles(updated_after, context.log):
        batch.append(profile)
        if len(batch) >= PROFILE_BATCH:
            fetched += _upsert_profiles(duckdb, batch, source, ingested_at)
            batch = []
    fetched += _upsert_profiles(duckdb, batch, source, ingested_at)

    with duckdb.get_connection() as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct profile_id) from raw.klaviyo_profiles"
        ).fetchone()
        preview = _preview(
            conn,
            """
            select profile_id, updated_at, source, left(payload::varchar, 80) as payload
            from raw.klaviyo_profiles order by updated_at desc limit 5
            """,
        )
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "fetched_this_run": fetched,
            "updated_after": str(updated_after),
            "dagster/row_count": int(total),
            "distinct_profiles": int(distinct),
            "preview": preview,
        }
    )


def _upsert_profiles(duckdb: DuckDBResource, profiles: list[dict], source: str, ingested_at: datetime) -> int:
    if not profiles:
        return 0
    frame = pd.DataFrame(
        {
            "profile_id": [p.get("id") for p in profiles],
            "updated_at": [
                _parse_ts(p["attributes"]["updated"])
                if isinstance((p.get("attributes") or {}).get("updated"), str)
                else None
                for p in profiles
            ],
            "payload": [json.dumps(p, separators=(",", ":")) for p in profiles],
            "source": source,
            "ingested_at": ingested_at,
        }
    )
    with duckdb.get_connection() as conn:
        conn.execute("begin transaction")
        try:
            conn.register("_profiles_batch", frame)
            conn.execute(
                """
                delete from raw.klaviyo_profiles r
                using _profiles_batch b
                where r.profile_id = b.profile_id and r.updated_at = b.updated_at
                """
            )
            conn.execute(
                """
                insert into raw.klaviyo_profiles
                select profile_id, updated_at, payload::json, source, ingested_at from _profiles_batch
                """
            )
            conn.unregister("_profiles_batch")
            conn.execute("commit")
        except Exception:
            conn.execute("rollback")
            raise
    return len(frame)
