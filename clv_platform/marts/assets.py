"""marts/* assets: the analyst-facing tables, the published snapshot and the score exports.

Every mart is one `sql/<name>.sql` file run in DuckDB with `create or replace`, so a rerun
rebuilds it from its inputs. Four of them (`product_performance`, `category_performance`,
`revenue_monthly`, `cohort_retention`) aggregate a state table in `marts_build` that a staging
merge updates only for the customers and guest orders it re-resolved (`incremental.py`): the
nightly cost follows the day's changes, not the order history. Two families:

* score marts (`customer_scores`, `segment_summary`, `cluster_summary`, `segment_history`,
  `klaviyo_comparison`) join the model outputs in `scores.*` with staging;
* insight marts (`revenue_monthly`, `cohort_retention`, `product_performance`,
  `category_performance`, `seasonality`) read staging only.

`analytics_snapshot` then publishes marts + scores to `analytics.duckdb` (see publish.py), the
file analysts open, and `customer_scores_export` writes the dated Parquet/CSV exports.
"""

from collections.abc import Callable

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from clv_platform.core.sql import sql_code_version, transaction
from clv_platform import contract
from clv_platform.marts.exports import export_customer_scores, exports_on_disk, prune_exports, scoring_date
from clv_platform.marts.forecast_assets import FORECAST_MARTS
from clv_platform.marts.incremental import LINE_MARTS, build_line_mart
from clv_platform.marts.publish import SNAPSHOT_STORAGE_VERSION, analytics_path, publish_snapshot
from clv_platform.resources.storage import read_sql, row_count, run_script, settings_of, table_exists
from clv_platform.models.clv_assets import CUSTOMER_CLV
from clv_platform.models.npd_score_assets import CUSTOMER_NPD
from clv_platform.models.segment_assets import CUSTOMER_SEGMENTS
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.staging_assets import CUSTOMERS, ORDER_LINES, ORDERS

OWNERS = ["team:analytics"]
SQL_PACKAGE = "clv_platform.marts"

SCORE_CLV, SCORE_NPD, SCORE_SEGMENTS = CUSTOMER_CLV, CUSTOMER_NPD, CUSTOMER_SEGMENTS
SCORE_KEYS = [SCORE_CLV, SCORE_NPD, SCORE_SEGMENTS]
STAGING_ORDERS, STAGING_ORDER_LINES, STAGING_CUSTOMERS = ORDERS, ORDER_LINES, CUSTOMERS

# Asset keys of the marts defined here, declared once; each equals the DuckDB table it writes.
CUSTOMER_SCORES = dg.AssetKey(["marts", "customer_scores"])
SEGMENT_SUMMARY = dg.AssetKey(["marts", "segment_summary"])
CLUSTER_SUMMARY = dg.AssetKey(["marts", "cluster_summary"])
KLAVIYO_COMPARISON = dg.AssetKey(["marts", "klaviyo_comparison"])
REVENUE_MONTHLY = dg.AssetKey(["marts", "revenue_monthly"])
COHORT_RETENTION = dg.AssetKey(["marts", "cohort_retention"])
PRODUCT_PERFORMANCE = dg.AssetKey(["marts", "product_performance"])
CATEGORY_PERFORMANCE = dg.AssetKey(["marts", "category_performance"])
SEASONALITY = dg.AssetKey(["marts", "seasonality"])
SEGMENT_HISTORY = dg.AssetKey(["marts", "segment_history"])
CUSTOMER_SCORES_EXPORT = dg.AssetKey(["marts", "customer_scores_export"])
ANALYTICS_SNAPSHOT = dg.AssetKey(["marts", "analytics_snapshot"])

# The score columns the marts read, with the type each is cast to. A column the model
# engineers have not (yet) written reads as null instead of failing the mart; `aliases`
# lists other names the same column may have in the score table.
SCORE_INPUTS: dict[str, dict] = {
    "clv_scores_input": {
        "table": "scores.customer_clv",
        "required": True,
        "columns": {
            "customer_id": "varchar",
            "predicted_clv": "double",
            "p_alive": "double",
            "expected_purchases": "double",
            "clv_rank": "bigint",
            "clv_percentile": "double",
            "clv_tier": "varchar",
            "model_version": "varchar",
            "scored_at": "timestamp",
            "predicted_clv_p10": "double",
            "predicted_clv_p90": "double",
        },
    },
    "npd_scores_input": {
        "table": "scores.customer_npd",
        "required": False,
        "columns": {
            "customer_id": "varchar",
            "predicted_next_purchase_date": "date",
            "p_purchase_30d": "double",
            "p_purchase_90d": "double",
            "p_purchase_7d": "double",
        },
    },
    "segment_scores_input": {
        "table": "scores.customer_segments",
        "required": False,
        "columns": {
            "customer_id": "varchar",
            "rfm_segment": "varchar",
            "lifecycle_stage": "varchar",
            "cluster_id": "integer",
            "cluster_name": "varchar",
        },
        "aliases": {"cluster_id": ["cluster"]},
    },
}


def create_score_inputs(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Create one temp view per score table with exactly the columns the marts expect.

    Returns what was missing (tables or columns), so the asset can report it. Raises if the
    CLV scores table itself is missing: without it there is no customer to report on.
    """
    missing: list[str] = []
    for view, spec in SCORE_INPUTS.items():
        table = spec["table"]
        if not table_exists(conn, table):
            if spec["required"]:
                raise dg.Failure(
                    f"{table} does not exist: materialize the scores assets before the marts",
                    metadata={"missing_table": table},
                )
            missing.append(table)
            nulls = ", ".join(f"null::{kind} as {name}" for name, kind in spec["columns"].items())
            conn.execute(f"create or replace temp view {view} as select {nulls} where false")
            continue
        schema, name = table.split(".")
        present = {
            c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall()
        }
        select = []
        for column, kind in spec["columns"].items():
            source = next(
                (c for c in [column, *spec.get("aliases", {}).get(column, [])] if c in present), None
            )
            if source is None:
                missing.append(f"{table}.{column}")
                select.append(f"null::{kind} as {column}")
            else:
                select.append(f'cast("{source}" as {kind}) as {column}')
        conn.execute(f"create or replace temp view {view} as select {', '.join(select)} from {table}")
    return missing


def mart_metadata(conn: duckdb.DuckDBPyConnection, table: str, order_by: str | None = None) -> dict:
    """Row count, column schema with the contract's descriptions and a five-row preview (in the
    contract's row order): what every mart reports in the UI. Also writes the descriptions as
    DuckDB comments, which `create or replace` has just dropped.
    """
    contract.apply_comments(conn, tables=[table])
    order_by = order_by or contract.order_by(table)
    preview = conn.execute(f"select * from {table} {'order by ' + order_by if order_by else ''} limit 5").df()
    return {
        "dagster/row_count": row_count(conn, table),
        **contract.column_metadata(conn, table),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
    }


def sql_mart(
    key: dg.AssetKey,
    deps: list[dg.AssetKey],
    description: str,
    extra_metadata: Callable[[duckdb.DuckDBPyConnection], dict] | None = None,
    macros: tuple[str, ...] = (),
    build: Callable[[duckdb.DuckDBPyConnection], dict] | None = None,
) -> dg.AssetsDefinition:
    """An asset that runs `sql/<name>.sql` and reports rows, columns and a preview of `marts.<name>`.

    ``macros`` are `sql/` files of DuckDB macros that several marts share; they run first on the
    same connection and count in the code version, so editing one marks its marts stale.
    ``build``, when given, writes the mart instead of running the scripts (which still make the
    code version) and returns metadata to report beside the mart's.
    """
    name = key.path[-1]
    scripts = [*(f"sql/{m}" for m in macros), f"sql/{name}.sql"]

    @dg.asset(
        key=key,
        code_version=sql_code_version(SQL_PACKAGE, *scripts),
        group_name="marts",
        deps=deps,
        kinds={"duckdb", "sql"},
        owners=OWNERS,
        description=description,
    )
    def _mart(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as conn:
            built = {}
            if build is not None:
                built = build(conn)
            else:
                for script in scripts:
                    run_script(conn, read_sql(SQL_PACKAGE, script))
            metadata = {**mart_metadata(conn, f"marts.{name}"), **built}
            if extra_metadata is not None:
                metadata.update(extra_metadata(conn))
        context.log.info(f"marts.{name}: {metadata['dagster/row_count']} rows"
                         + "".join(f"; {k} {v}" for k, v in built.items()))
        return dg.MaterializeResult(metadata=metadata)

    return _mart


@dg.asset(
    key=CUSTOMER_SCORES,
    code_version=sql_code_version(SQL_PACKAGE, "sql/customer_scores.sql"),
    group_name="marts",
    deps=[*SCORE_KEYS, STAGING_CUSTOMERS, STAGING_ORDERS],
    kinds={"duckdb", "sql"},
    owners=OWNERS,
)
def customer_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One row per scored customer: email, predicted CLV, probability alive, expected purchases,
    next purchase date and 30/90-day purchase probabilities, RFM segment, lifecycle stage,
    cluster, CLV rank/percentile/tier, model version, plus order history and marketing consent.
    """
    with duckdb.get_connection() as conn:
        missing = create_score_inputs(conn)
        as_of = scoring_cutoff(conn)
        run_script(conn, read_sql(SQL_PACKAGE, "sql/customer_scores.sql"), {"as_of": as_of})
        metadata = mart_metadata(conn, "marts.customer_scores")
        tiers = conn.execute(
            "select clv_tier, count(*) from marts.customer_scores group by 1 order by min(clv_rank)"
        ).fetchall()
    if missing:
        context.log.warning(f"score inputs missing, read as null: {', '.join(missing)}")
    metadata.update(
        {
            "as_of_date": str(as_of),
            "missing_score_inputs": ", ".join(missing) or "none",
            "customers_per_tier": dg.MetadataValue.json({str(t): int(n) for t, n in tiers}),
        }
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=customer_scores, blocking=True, description="One row per customer, one per CLV score.")
def customer_scores_one_row_per_customer(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        rows, customers = conn.execute(
            "select count(*), count(distinct customer_id) from marts.customer_scores"
        ).fetchone()
        scored = row_count(conn, "scores.customer_clv")
    passed = rows == customers == scored
    return dg.AssetCheckResult(
        passed=bool(passed),
        # what failed, in numbers: the CLI and the UI show the description of a failed check
        description=f"{rows:,} rows, one per customer and per CLV score" if passed else
        f"marts.customer_scores has {rows:,} rows for {customers:,} distinct customers ({rows - customers:,} "
        f"duplicated) while scores.customer_clv holds {scored:,} scores: the marts below it are not built from it",
        metadata={"rows": int(rows), "distinct_customers": int(customers), "clv_scores": int(scored)},
    )


def _spearman(conn: duckdb.DuckDBPyConnection) -> dict:
    """Rank correlation of our CLV with Klaviyo's, ties sharing their average rank."""
    n, rho = conn.execute(
        """
        with ranked as (
            select
                (rank() over (order by predicted_clv) + count(*) over () + 1
                 - rank() over (order by predicted_clv desc)) / 2.0 as ours,
                (rank() over (order by klaviyo_predicted_clv) + count(*) over () + 1
                 - rank() over (order by klaviyo_predicted_clv desc)) / 2.0 as theirs
            from marts.klaviyo_comparison
        )
        select count(*), corr(ours, theirs) from ranked
        """
    ).fetchone()
    dates = conn.execute(
        "select median(abs(next_order_days_difference)) from marts.klaviyo_comparison"
    ).fetchone()[0]
    return {
        "customers_compared": int(n),
        "clv_rank_correlation": dg.MetadataValue.float(float(rho)) if rho is not None else "n/a",
        "median_abs_next_order_days_difference": float(dates) if dates is not None else "n/a",
    }


segment_summary = sql_mart(
    SEGMENT_SUMMARY,
    [CUSTOMER_SCORES],
    "Size, shares, predicted and historical value per RFM segment, lifecycle stage and CLV tier "
    "(long format: segment_type, segment).",
)
cluster_summary = sql_mart(
    CLUSTER_SUMMARY,
    [CUSTOMER_SCORES],
    "One row per behavioural cluster: size, share, predicted CLV, probability alive, history.",
)
klaviyo_comparison = sql_mart(
    KLAVIYO_COMPARISON,
    [CUSTOMER_SCORES, STAGING_CUSTOMERS],
    "Our predicted CLV and next purchase date beside Klaviyo's predictions for the customers both "
    "scored; metadata carries the Spearman rank correlation of the two CLV rankings.",
    extra_metadata=_spearman,
)

def line_mart(key: dg.AssetKey, deps: list[dg.AssetKey], description: str) -> dg.AssetsDefinition:
    """An order-line mart kept as a per-buyer state that a staging merge updates in part
    (``incremental.py``), then aggregated by `sql/<name>.sql`, all in one transaction."""
    name = key.path[-1]
    return sql_mart(key, deps, description, macros=(LINE_MARTS[name].macro_file.removeprefix("sql/"),),
                    build=lambda conn: build_line_mart(conn, name))


revenue_monthly = line_mart(
    REVENUE_MONTHLY,
    [STAGING_ORDERS],
    "Net revenue, orders, AOV and new vs returning customers and revenue per calendar month.",
)
cohort_retention = line_mart(
    COHORT_RETENTION,
    [STAGING_ORDERS],
    "Acquisition-month cohorts by months since first order: active customers, retention share, "
    "revenue and cumulative revenue per customer.",
)
product_performance = line_mart(
    PRODUCT_PERFORMANCE,
    [STAGING_ORDER_LINES],
    "Revenue, units, orders, buyers and repeat-buyer share per product.",
)
category_performance = line_mart(
    CATEGORY_PERFORMANCE,
    [STAGING_ORDER_LINES],
    "Revenue, units, orders, buyers and repeat-buyer share per product category.",
)
seasonality = sql_mart(
    SEASONALITY,
    [STAGING_ORDERS],
    "Orders and revenue by weekday and by calendar month, indexed per calendar day (1 = average).",
)


@dg.asset(
    key=SEGMENT_HISTORY,
    code_version=sql_code_version(SQL_PACKAGE, "sql/segment_history.sql"),
    group_name="marts",
    deps=[SEGMENT_SUMMARY],
    kinds={"duckdb", "sql"},
    owners=OWNERS,
)
def segment_history(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Segment sizes per scoring date, accumulated across scoring runs (the table is never
    recreated); a rerun on the same scoring date replaces that date's rows.
    """
    with duckdb.get_connection() as conn:
        on = scoring_date(conn)
        with transaction(conn):
            run_script(conn, read_sql(SQL_PACKAGE, "sql/segment_history.sql"), {"scoring_date": on})
        metadata = mart_metadata(conn, "marts.segment_history", order_by="scoring_date desc, segment_type")
        dates = conn.execute("select count(distinct scoring_date) from marts.segment_history").fetchone()[0]
    metadata.update({"scoring_date": str(on), "scoring_dates_kept": int(dates)})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=CUSTOMER_SCORES_EXPORT,
    group_name="marts",
    deps=[CUSTOMER_SCORES],
    kinds={"parquet", "csv"},
    owners=OWNERS,
)
def customer_scores_export(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """`exports/customer_scores_<scoring date>.parquet` and `.csv` (store.toml [exports] formats)
    from marts.customer_scores, for tools that do not speak DuckDB; the same scoring date
    overwrites its files. With [exports] keep_dates = N, the files of scoring dates older than the
    newest N are deleted after the write (0, the default: every date stays).
    """
    settings = settings_of(duckdb)
    with duckdb.get_connection() as conn:
        on = scoring_date(conn)
        paths = export_customer_scores(conn, on, settings.export_dir, settings.export_formats)
        rows = row_count(conn, "marts.customer_scores")
    deleted = prune_exports(settings.export_dir, settings.export_keep_dates, on)
    files, size = exports_on_disk(settings.export_dir)
    context.log.info(f"exported {rows} customers to {', '.join(str(p) for p in paths.values())}; "
                     f"the folder holds {files} export files, {size / 1e6:,.0f} MB"
                     + (f"; deleted {len(deleted)} files of scoring dates beyond the newest "
                        f"{settings.export_keep_dates} ([exports] keep_dates)" if deleted else ""))
    return dg.MaterializeResult(
        metadata={
            "scoring_date": str(on),
            "dagster/row_count": rows,
            "formats": ", ".join(paths),
            "export_files_on_disk": files,
            "export_bytes_on_disk": size,
            "keep_dates": settings.export_keep_dates,
            "files_deleted": len(deleted),
            **({"deleted": dg.MetadataValue.json([p.name for p in deleted])} if deleted else {}),
            **{f"{fmt}_bytes": path.stat().st_size for fmt, path in paths.items()},
            **{f"{fmt}_path": dg.MetadataValue.path(str(path)) for fmt, path in paths.items()},
        }
    )


INSIGHT_MARTS = [revenue_monthly, cohort_retention, product_performance, category_performance, seasonality]
SCORE_MARTS = [customer_scores, segment_summary, cluster_summary, segment_history, klaviyo_comparison]
TABLE_MARTS = [*SCORE_MARTS, *INSIGHT_MARTS, *FORECAST_MARTS]


@dg.asset(
    key=ANALYTICS_SNAPSHOT,
    group_name="marts",
    deps=[key for mart in TABLE_MARTS for key in mart.keys],
    kinds={"duckdb"},
    owners=OWNERS,
)
def analytics_snapshot(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """`analytics.duckdb`: a copy of every marts.* and scores.* table, published as a new file and
    swapped in atomically, so analysts can query it (read-only) while the pipeline runs.
    """
    with duckdb.get_connection() as conn:
        snapshot = publish_snapshot(conn, analytics_path())
    table_md = "\n".join(
        ["| table | rows |", "|---|---|"] + [f"| {name} | {rows:,} |" for name, rows in snapshot.tables.items()]
    )
    context.log.info(f"published {len(snapshot.tables)} tables to {snapshot.path}")
    if snapshot.dropped:
        context.log.warning(f"{len(snapshot.dropped)} tables of the previous snapshot are not in this one (the "
                            f"database no longer has them; materialize them to publish them again): "
                            f"{', '.join(snapshot.dropped)}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(snapshot.path)),
            "published_at": str(snapshot.published_at),
            "tables": dg.MetadataValue.md(table_md),
            "size_mb": round(snapshot.size_bytes / 1e6, 2),
            "open_with": f"duckdb -readonly {snapshot.path}   (CLI: pip install duckdb-cli; any duckdb >= 1.0)",
            "storage_version": SNAPSHOT_STORAGE_VERSION,
            # tables the replaced snapshot had and this one has not: analysts' queries of them now fail
            "tables_no_longer_published": dg.MetadataValue.json(snapshot.dropped),
        }
    )


MART_ASSETS = [*TABLE_MARTS, customer_scores_export, analytics_snapshot]
MART_CHECKS = [customer_scores_one_row_per_customer]
