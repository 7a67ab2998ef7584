"""features/customer_features: point-in-time RFM, cadence and basket features per customer."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.sql import sql_code_version
from clv_platform.resources.storage import settings_of
from clv_platform.transforms.cutoff import cutoff_and_rule
from clv_platform.transforms.features import FEATURE_TABLE, materialize_features
from clv_platform.transforms.staging_assets import CUSTOMERS, ORDER_HISTORY, ORDER_LINES, REFUNDS

STAGING_INPUTS = [ORDER_HISTORY, ORDER_LINES, CUSTOMERS, REFUNDS]
# The asset key, declared once (= the DuckDB table features.customer_features).
CUSTOMER_FEATURES = dg.AssetKey(["features", "customer_features"])


@dg.asset(
    key=CUSTOMER_FEATURES,
    code_version=sql_code_version("clv_platform.transforms", "sql/customer_features.sql"),
    group_name="features",
    deps=STAGING_INPUTS,
    kinds={"duckdb", "sql"},
    owners=["team:data-science"],
)
def customer_features(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One row per customer with RFM, lifecycle, cadence, basket and context features as of the
    scoring cutoff (the last day with orders, or `CLV_AS_OF`), computed in DuckDB SQL from staging only.
    """
    with duckdb.get_connection() as conn:
        cutoff, cutoff_rule = cutoff_and_rule(conn, settings_of(duckdb))
        rows = materialize_features(conn, cutoff)
        columns = [
            name for (name,) in conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'features' and table_name = 'customer_features' order by ordinal_position"
            ).fetchall()
        ]
        null_share_sql = ", ".join(
            f"avg(case when \"{c}\" is null then 1.0 else 0.0 end) as \"{c}\"" for c in columns
        )
        null_shares = conn.execute(f"select {null_share_sql} from {FEATURE_TABLE}").df().iloc[0]
        summary = conn.execute(
            f"""
            select avg(frequency) as mean_frequency, avg(days_since_last_order) as mean_recency_days,
                   avg(total_net_spend) as mean_total_spend, avg(case when frequency = 0 then 1.0 else 0 end)
                   as one_time_buyer_share
            from {FEATURE_TABLE}
            """
        ).df().iloc[0]
        preview = conn.execute(f"select * from {FEATURE_TABLE} order by total_net_spend desc limit 5").df()
        contract.apply_comments(conn, tables=[FEATURE_TABLE])
        schema = contract.column_metadata(conn, FEATURE_TABLE)
    context.log.info(f"{rows} customers with features as of {cutoff}")
    null_md = "\n".join(
        ["| column | null share |", "|---|---|"]
        + [f"| {c} | {float(v):.1%} |" for c, v in null_shares.items() if float(v) > 0]
    )
    return dg.MaterializeResult(
        metadata={
            "cutoff": str(cutoff),
            "cutoff_rule": cutoff_rule,
            "dagster/row_count": rows,
            **schema,
            "columns": len(columns),
            "mean_frequency": float(summary["mean_frequency"] or 0),
            "mean_recency_days": float(summary["mean_recency_days"] or 0),
            "one_time_buyer_share": float(summary["one_time_buyer_share"] or 0),
            "null_share": dg.MetadataValue.md(null_md or "no nulls"),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
        }
    )
