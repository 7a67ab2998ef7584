"""scores/customer_segments: RFM segments, lifecycle stages and behavioural clusters."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.assets import layer_spec
from clv_platform.models.clv_assets import CUSTOMER_CLV
from clv_platform.models.segments import load_config, segment_customers
from clv_platform.resources.storage import replace_table
from clv_platform.transforms.features import FEATURE_TABLE
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES


CUSTOMER_SEGMENTS = dg.AssetKey(["scores", "customer_segments"])  # the table scores.customer_segments
# the clusters' summary, written by the same run as the segments it summarizes
CLUSTER_SUMMARY = dg.AssetKey(["ml", "cluster_summary"])
SEGMENTS_TABLE = "scores.customer_segments"
CLUSTER_SUMMARY_TABLE = "ml.cluster_summary"


@dg.multi_asset(
    name="customer_segments",
    specs=[
        layer_spec(CUSTOMER_SEGMENTS, deps=[CUSTOMER_FEATURES, CUSTOMER_CLV], kinds={"python", "scikitlearn", "duckdb"},
                   description="Per customer: RFM quintile scores and named segment (rules in models/segments.toml),\n"
                   "lifecycle stage (tenure, cadence-relative recency, probability alive) and a KMeans cluster\n"
                   "with k chosen by silhouette; the cluster summary goes to ml.cluster_summary."),
        layer_spec(CLUSTER_SUMMARY, deps=[CUSTOMER_FEATURES, CUSTOMER_CLV], kinds={"python", "scikitlearn", "duckdb"},
                   description="One row per behavioural cluster of the segmentation written in the same run."),
    ],
)
def customer_segments(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """The segments and the summary of their clusters, one run for both so the summary always
    describes the clusters the customers carry."""
    config = load_config()
    with duckdb.get_connection() as conn:
        frame = conn.execute(
            f"""
            select f.*, c.p_alive, c.predicted_clv
            from {FEATURE_TABLE} as f
            left join scores.customer_clv as c using (customer_id)
            order by f.customer_id
            """
        ).df()
        segments, clusters = segment_customers(frame, config, p_alive_col="p_alive", clv_col="predicted_clv")
        segments = segments.rename(columns={"cluster": "cluster_id"})
        rows = replace_table(conn, SEGMENTS_TABLE, segments)
        summary_rows = replace_table(conn, CLUSTER_SUMMARY_TABLE, clusters.summary.reset_index(drop=False))
        contract.apply_comments(conn, tables=[SEGMENTS_TABLE, CLUSTER_SUMMARY_TABLE])
        schema = contract.column_metadata(conn, SEGMENTS_TABLE)
        summary_schema = contract.column_metadata(conn, CLUSTER_SUMMARY_TABLE)
    sizes = {
        column: segments[column].value_counts().rename_axis(column).reset_index(name="customers")
        for column in ("rfm_segment", "lifecycle_stage", "cluster_name")
    }
    silhouette = pd.DataFrame({"k": list(clusters.silhouette), "silhouette": list(clusters.silhouette.values())})
    context.log.info(f"{rows} customers segmented; k={clusters.k}")
    yield dg.MaterializeResult(
        asset_key=CUSTOMER_SEGMENTS,
        metadata={
            "dagster/row_count": rows,
            **schema,
            "k": clusters.k,
            "silhouette": float(clusters.silhouette[clusters.k]),
            "silhouette_by_k": dg.MetadataValue.md(silhouette.to_markdown(index=False)),
            "rfm_segment_sizes": dg.MetadataValue.md(sizes["rfm_segment"].to_markdown(index=False)),
            "lifecycle_stage_sizes": dg.MetadataValue.md(sizes["lifecycle_stage"].to_markdown(index=False)),
            "cluster_sizes": dg.MetadataValue.md(sizes["cluster_name"].to_markdown(index=False)),
            "cluster_summary": dg.MetadataValue.md(clusters.summary.to_markdown()),
        }
    )
    yield dg.MaterializeResult(asset_key=CLUSTER_SUMMARY,
                               metadata={"dagster/row_count": summary_rows, **summary_schema, "k": clusters.k})


SEGMENT_ASSETS = [customer_segments]
