"""raw/* assets: Shopify orders (daily partitions of `updatedAt`) and Klaviyo profiles.

Writes are idempotent and crash-safe: each chunk of partitions is fetched in full,
then its rows are deleted and re-inserted in one DuckDB transaction. A run killed
mid-way leaves only whole chunks behind, and rerunning rewrites them identically.

A window is replaced only by a fetch that finished cleanly (the connectors raise on any
malformed or incomplete answer), and not by one that lost most of the window's orders
unless the run is configured with `allow_shrink`. Errors that a retry cannot fix (a wrong
credential, a missing scope, a wrong API version, a refused replacement) fail the step at
once instead of going through the asset's retry policy.

Before anything is fetched, the database's recorded store must match `CLV_SOURCE`
(`store_source.ensure_store_source`); rows of another source are never deleted. A files-only
store has no API ingestion: these assets then record that they did nothing.
"""

import json
from dataclasses import replace
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from clv_platform.core.scratch import scratch_dir
from clv_platform.core.sql import transaction
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.ingestion.store_source import fail_unless_store_matches
from clv_platform.ingestion.source_resources import DemoStoreResource, FilesOnlyResource
from clv_platform.resources.http import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    RequestRejectedError,
)
from clv_platform.resources.storage import (
    StorageResource, attached_read_only, settings_of, spool_connection,
)
from clv_platform.settings import Settings, load_settings

ORDERS_START_DATE = load_settings().orders_start_date

shopify_daily_partitions = dg.DailyPartitionsDefinition(start_date=ORDERS_START_DATE)

# Partitions fetched and committed together; small enough that a crash loses little work.
CHUNK_DAYS = 31
# Bigger ranges than this go through a Shopify bulk operation instead of paging.
BULK_THRESHOLD_DAYS = 90
# Fetched order nodes written to the scratch file at a time (`_replace_window`).
ORDER_BATCH = 20_000


class ReplacementRefused(RuntimeError):
    """A clean fetch returned far fewer orders than the window holds; the old rows are kept."""


# A retry of these gives the same answer: fail the step at once, naming the setting to fix.
NOT_RETRYABLE = (AuthenticationError, PermissionDeniedError, NotFoundError, RequestRejectedError, ReplacementRefused)


@contextmanager
def fail_fast_on_permanent_errors():
    """Turn errors a retry cannot fix into `dg.Failure(allow_retries=False)`.

    The assets' `RetryPolicy` is for transient faults (exhausted connector retries, a
    malformed answer, a DuckDB lock); without this it would also retry a 401 twice, with
    30 s and 90 s waits. The message is already redacted by the connector.
    """
    try:
        yield
    except NOT_RETRYABLE as exc:
        raise dg.Failure(
            description=f"{type(exc).__name__}: {exc}",
            metadata={"error_class": type(exc).__name__, "retryable": False},
            allow_retries=False,
        ) from exc


class RawOrdersConfig(dg.Config):
    """Run config of raw/shopify_orders: the replacement guard."""

    allow_shrink: bool = Field(default=False, description=(
        "Replace a window even when the fetch lost more than max_shrink_fraction of the orders it held (orders "
        "deleted in Shopify). Off by default: a short fetch fails and keeps the old rows."))
    max_shrink_fraction: float = Field(default=0.5, description=(
        "Largest share of a window's stored orders that may be absent from a re-fetch (orders updated since and "
        "stored in a later window do not count as absent)."))


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
        source = "demo" if isinstance(client, DemoStoreResource) else "files" if isinstance(client, FilesOnlyResource) else "shopify"
        settings = replace(settings, source=source)
    return settings


def _guard_source(context, duckdb: DuckDBResource, client: dg.ConfigurableResource) -> Settings:
    """Fail before touching anything when the database holds another store or live credentials are missing."""
    settings = _store_settings(duckdb, client)
    fail_unless_store_matches(duckdb, settings)
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


# Asset keys, declared once (= the DuckDB tables raw.shopify_orders and raw.klaviyo_profiles).
RAW_SHOPIFY_ORDERS = dg.AssetKey(["raw", "shopify_orders"])
RAW_KLAVIYO_PROFILES = dg.AssetKey(["raw", "klaviyo_profiles"])


@dg.asset(
    key=RAW_SHOPIFY_ORDERS,
    group_name="raw",
    partitions_def=shopify_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"shopify", "duckdb"},
    owners=["team:data-engineering"],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_shopify_orders(
    context: dg.AssetExecutionContext,
    config: RawOrdersConfig,
    duckdb: DuckDBResource,
    shopify: dg.ConfigurableResource,
) -> dg.MaterializeResult:
    """Shopify order nodes as received, one row per order version, partitioned by day of `updatedAt`.

    Re-running a partition (or a range, in one run) replaces exactly its rows, unless the
    fetch lost most of them (see `RawOrdersConfig`).
    """
    with fail_fast_on_permanent_errors():
        return _load_shopify_orders(context, config, duckdb, shopify)


def _load_shopify_orders(
    context: dg.AssetExecutionContext,
    config: RawOrdersConfig,
    duckdb: DuckDBResource,
    shopify: dg.ConfigurableResource,
) -> dg.MaterializeResult:
    window = context.partition_time_window
    start = window.start.astimezone(timezone.utc).replace(tzinfo=None)
    end = window.end.astimezone(timezone.utc).replace(tzinfo=None)
    settings = _guard_source(context, duckdb, shopify)
    if settings.source == "files":
        return _skipped_for_files("raw.shopify_orders")
    source = _source_label(shopify, "shopify")
    ingested_at = datetime.now(timezone.utc).replace(tzinfo=None)
    use_bulk = hasattr(shopify, "bulk_orders") and (end - start).days > BULK_THRESHOLD_DAYS

    guard = ShrinkGuard(
        enabled=source != "demo" and not config.allow_shrink,  # demo rows can always be generated again
        max_fraction=config.max_shrink_fraction,
    )
    total = 0
    if use_bulk:
        context.log.info(f"{start:%Y-%m-%d}..{end:%Y-%m-%d}: first full load through a bulk operation")
        # The window is replaced only after the fetch has finished without an error (the
        # connectors raise on every incomplete or malformed answer); meanwhile the fetched rows wait
        # in a scratch file, not in memory: a store's first load can be millions of orders.
        nodes = (n for n in shopify.bulk_orders(start, context.log) if _in_window(n, start, end))
        total += _replace_window(duckdb, start, end, nodes, source, ingested_at, guard)
    else:
        for chunk_start, chunk_end in _chunks(start, end, CHUNK_DAYS):
            nodes = shopify.iter_orders(chunk_start, chunk_end, context.log)
            written = _replace_window(duckdb, chunk_start, chunk_end, nodes, source, ingested_at, guard)
            total += written
            context.log.info(f"{chunk_start:%Y-%m-%d}..{chunk_end:%Y-%m-%d}: {written} order versions")

    shop = _store_shop(duckdb, shopify, source, context.log)
    versions = shopify.served_api_versions() if hasattr(shopify, "served_api_versions") else {}
    if versions and versions["served"] not in ("unknown", versions["requested"]):
        context.log.warning(
            f"Shopify served Admin API version {versions['served']} instead of {versions['requested']}: "
            "set SHOPIFY_API_VERSION to a supported version"
        )

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
            "orders_absent_from_refetch": guard.absent,
            "fetch_mode": "bulk operation" if use_bulk else "paged",
            "dagster/row_count": int(table_rows),
            "rows_in_window": int(stats[0]),
            "orders_in_window": int(stats[1]),
            "min_updated_at": str(stats[2]),
            "max_updated_at": str(stats[3]),
            "preview": preview,
            **shop,
            **{f"shopify_api_version_{k}": v for k, v in versions.items()},
        }
    )


def _store_shop(duckdb: DuckDBResource, shopify: dg.ConfigurableResource, source: str, log) -> dict:
    """Read `shop { ianaTimezone currencyCode }` once per load and keep it in raw.shopify_shop:
    staging counts order days in that time zone and money in that currency."""
    if not hasattr(shopify, "shop_info"):
        return {}
    info = shopify.shop_info(log)
    domain = getattr(shopify, "shop_domain", source)
    with duckdb.get_connection() as conn:
        with transaction(conn):
            conn.execute("delete from raw.shopify_shop where source = ?", [source])
            conn.execute(
                "insert into raw.shopify_shop values (?, ?, ?, ?, ?)",
                [domain, info["ianaTimezone"], info["currencyCode"], source,
                 datetime.now(timezone.utc).replace(tzinfo=None)],
            )
    log.info(f"shop time zone {info['ianaTimezone']}, currency {info['currencyCode']}")
    return {"shop_timezone": info["ianaTimezone"], "shop_currency": info["currencyCode"]}


def _in_window(node: dict, start: datetime, end: datetime) -> bool:
    updated = node.get("updatedAt")
    if not isinstance(updated, str):
        return True  # keep it: staging rejects it with a reason instead of it vanishing here
    return start <= _parse_ts(updated) < end


class ShrinkGuard:
    """Refuses a replacement that would drop more than `max_fraction` of a window's orders.

    An order stored in the window but absent from its re-fetch is expected when it was
    updated since (its newer version lives in a later window, already stored); any other
    absent order is one the fetch lost, or one deleted in Shopify. `absent` totals them.
    """

    def __init__(self, enabled: bool, max_fraction: float):
        self.enabled = enabled
        self.max_fraction = max_fraction
        self.absent = 0

    def check(self, conn, start: datetime, end: datetime, source: str) -> None:
        stored, absent = conn.execute(
            """
            with stored as (
                select distinct order_id from raw.shopify_orders
                where partition_date >= ? and partition_date < ? and source = ? and order_id is not null
            ),
            updated_since as (
                select distinct order_id from raw.shopify_orders where source = ? and updated_at >= ?
            )
            select
                count(*),
                count(*) filter (where order_id not in (select order_id from _orders_batch where order_id is not null)
                                   and order_id not in (select order_id from updated_since))
            from stored
            """,
            [start.date(), end.date(), source, source, end],
        ).fetchone()
        self.absent += int(absent)
        if self.enabled and stored and absent > self.max_fraction * stored:
            raise ReplacementRefused(
                f"raw.shopify_orders {start:%Y-%m-%d}..{end:%Y-%m-%d}: the fetch lacks {absent} of the {stored} "
                f"orders stored for this window (more than max_shrink_fraction={self.max_fraction:.0%}); the "
                "stored rows are kept. If those orders were deleted in Shopify, rerun with run config "
                "ops.raw__shopify_orders.config.allow_shrink: true"
            )


def _replace_window(
    duckdb: DuckDBResource,
    start: datetime,
    end: datetime,
    nodes: Iterable[dict],
    source: str,
    ingested_at: datetime,
    guard: ShrinkGuard | None = None,
) -> int:
    """Fetch `nodes` to the end, then delete the window's partitions and insert them, atomically.

    The nodes are written as they arrive, `ORDER_BATCH` at a time, to a scratch DuckDB file (a
    first full load through a bulk operation is every order of the store's history: millions of
    nodes, tens of gigabytes as Python objects), and the store is opened only once the fetch
    has ended: a fetch that raises leaves the stored window as it was, and the store's file is
    not held for the minutes a fetch takes. `guard` refuses (before anything is deleted) a fetch
    that lost most of the window's orders.
    Rows whose `updatedAt` is unparseable carry no partition date; they are stored under the
    window's first day so that they are replaced by the same rerun and reach staging's
    rejected rows.
    """
    with scratch_dir("orders") as scratch:
        fetched = scratch / "fetched.duckdb"
        # the scratch file only takes appends: a small buffer pool (the rebuild beside it has the
        # platform's memory limit for its sort)
        with spool_connection(fetched) as spool:
            spool.execute("create table orders (order_id varchar, updated_at timestamp, partition_date date, "
                          "payload varchar, source varchar, ingested_at timestamp)")
            for batch in _batches(nodes, ORDER_BATCH):
                frame = order_frame(batch, source, ingested_at)
                spool.register("_orders_fetched", frame)
                spool.execute("insert into orders select order_id, updated_at, coalesce(partition_date, ?), payload, "
                              "source, ingested_at from _orders_fetched", [start.date()])
                spool.unregister("_orders_fetched")
            (rows,) = spool.execute("select count(*) from orders").fetchone()
        # closed on an error too: DuckDBResource.get_connection closes only on success, and a connection
        # left open by a failed step would keep the file locked for as long as its traceback lives
        with (duckdb.get_connection() as conn, closing(conn),
              attached_read_only(conn, fetched, "clv_fetched_orders")):
            with transaction(conn):
                conn.execute("create or replace temp view _orders_batch as select * from clv_fetched_orders.orders")
                if guard is not None:
                    guard.check(conn, start, end, source)
                conn.execute(
                    "delete from raw.shopify_orders where partition_date >= ? and partition_date < ? "
                    "and source = ?",
                    [start.date(), end.date(), source],
                )
                conn.execute(
                    """
                    insert into raw.shopify_orders
                    select order_id, updated_at, partition_date, payload::json, source, ingested_at
                    from _orders_batch
                    """
                )
            conn.execute("drop view _orders_batch")
    return int(rows)


def _batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


PROFILE_BATCH = 5000


@dg.asset(
    key=RAW_KLAVIYO_PROFILES,
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
    Profiles whose latest stored version lacks `predictive_analytics` (it failed during
    their sync) are requested again by id on every run until it arrives.
    """
    with fail_fast_on_permanent_errors():
        return _load_klaviyo_profiles(context, duckdb, klaviyo)


def _load_klaviyo_profiles(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, klaviyo: dg.ConfigurableResource
) -> dg.MaterializeResult:
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
    for batch in _batches(klaviyo.iter_profiles(updated_after, context.log), PROFILE_BATCH):
        fetched += _upsert_profiles(duckdb, batch, source, ingested_at)
    refetched = _refetch_missing_predictions(context, duckdb, klaviyo, source, ingested_at)

    with duckdb.get_connection() as conn:
        still_missing = len(_profiles_missing_predictions(conn, source)) if refetched is not None else 0
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
            "refetched_for_predictions": refetched or 0,
            "profiles_missing_predictions": still_missing,
            "updated_after": str(updated_after),
            "dagster/row_count": int(total),
            "distinct_profiles": int(distinct),
            "preview": preview,
        }
    )


def _profiles_missing_predictions(conn, source: str) -> list[str]:
    """Profiles whose latest stored version has no `predictive_analytics` attribute at all.

    The attribute is present (possibly with null values) whenever it was asked for and
    delivered; it is absent only when the sync fell back to fetching without it.
    """
    return [
        row[0]
        for row in conn.execute(
            """
            select profile_id from (
                select profile_id, payload,
                       row_number() over (partition by profile_id order by updated_at desc, ingested_at desc) as rn
                from raw.klaviyo_profiles
                where source = ? and profile_id is not null
            )
            where rn = 1 and not coalesce(json_exists(payload, '$.attributes.predictive_analytics'), false)
            order by profile_id
            """,
            [source],
        ).fetchall()
    ]


def _refetch_missing_predictions(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    klaviyo: dg.ConfigurableResource,
    source: str,
    ingested_at: datetime,
) -> int | None:
    """Request again, by id, the profiles still lacking `predictive_analytics`; None when not applicable.

    A failure here (predictive_analytics still unavailable) is a warning, not a failed run:
    the profiles themselves are stored, and they stay on the list for the next run.
    """
    if not getattr(klaviyo, "include_predictive_analytics", False) or not hasattr(klaviyo, "profiles_by_id"):
        return None
    with duckdb.get_connection() as conn:
        missing = _profiles_missing_predictions(conn, source)
    if not missing:
        return 0
    limit = max(0, int(getattr(klaviyo, "predictive_refetch_max_profiles", len(missing))))
    context.log.info(
        f"re-requesting predictive_analytics for {min(limit, len(missing))} of the {len(missing)} profiles "
        "that lack it"
    )
    missing = missing[:limit]
    refetched = 0
    batch: list[dict] = []
    try:
        for profile in klaviyo.profiles_by_id(missing, context.log):
            batch.append(profile)
            if len(batch) >= PROFILE_BATCH:
                refetched += _upsert_profiles(duckdb, batch, source, ingested_at)
                batch = []
    except ConnectorError as exc:
        if isinstance(exc, NOT_RETRYABLE):
            raise
        context.log.warning(
            f"predictive_analytics still unavailable ({type(exc).__name__}: {exc}); the profiles that lack it "
            "are requested again on the next run"
        )
    refetched += _upsert_profiles(duckdb, batch, source, ingested_at)
    return refetched


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
        with transaction(conn):
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
    return len(frame)
