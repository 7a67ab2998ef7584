"""scores/customer_segments: RFM segments, lifecycle stages and behavioural clusters.

The clustering (scaler, centroids, names; KMeans over k with the silhouette, the expensive part)
is fitted by the training run, the first run, or when the stored fit is stale, and stored in
``ml.stored_fits``; every run assigns customers to the stored centroids. Store-wide quantities
(RFM percentile ranks in SQL, the pooled cadence of the lifecycle rule) are computed over all
customers; the per-customer rest runs in batches of ``batch_customers``, so memory does not grow
with the store. ``ml.cluster_summary`` is an aggregate in SQL of the segments written.
"""

import re

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.assets import layer_spec
from clv_platform.core.batches import BatchWriter, customer_ranges, read_batches
from clv_platform.models import stored_fits
from clv_platform.models.clv_assets import CUSTOMER_CLV, CUSTOMER_NPD, TRAINING_KEYS, trained_npd_scores
from clv_platform.models.lifecycle import (_lifecycle_config, cadence_rule, lifecycle_stages, population_cadence,
                                          repeat_buyers)
from clv_platform.models.segments import assign_clusters, fit_clusters, load_config, rfm_from_scores
from clv_platform.resources.storage import read_sql, row_count, settings_of
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES


CUSTOMER_SEGMENTS = dg.AssetKey(["scores", "customer_segments"])  # the table scores.customer_segments
# the clusters' summary, written by the same run as the segments it summarizes
CLUSTER_SUMMARY = dg.AssetKey(["ml", "cluster_summary"])
SEGMENTS_TABLE = "scores.customer_segments"
CLUSTER_SUMMARY_TABLE = "ml.cluster_summary"
SEGMENT_COLUMNS = ["customer_id", "r_score", "f_score", "m_score", "fm_score", "rfm_cell", "rfm_segment",
                   "lifecycle_stage", "cluster_id", "cluster_name"]


def _column(name: str) -> str:
    """A column name from segments.toml, checked before it goes into SQL text."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", str(name)):
        raise ValueError(f"segments.toml names the column {name!r}: expected a lower-case identifier")
    return name


def stored_or_fitted_clusters(context, conn, cutoff, config: dict, max_age_days: int) -> tuple[dict, object, object]:
    """(cluster parameters, ``stored_fits.Decision``, fit cutoff): the stored clustering when it may be
    reused, else KMeans fitted on every customer's cluster features (the only whole-store frame,
    of a few numeric columns) and stored."""
    key = stored_fits.config_key({"clusters": config["clusters"]})
    stored = stored_fits.load(conn, stored_fits.SEGMENTS)
    decision = stored_fits.decide(stored, cutoff, key, max_age_days, stored_fits.training_run(context, TRAINING_KEYS))
    if decision.reuse:
        return stored.params, decision, stored.fit_cutoff
    cfg = config["clusters"]
    columns = sorted({*map(_column, cfg["features"]), *(_column(cfg[c]) for c in
                      ("revenue_column", "recency_column", "frequency_column", "aov_column"))})
    frame = conn.execute(
        f"select {', '.join('f.' + c for c in columns)}, c.predicted_clv from {FEATURE_TABLE} as f "
        "left join scores.customer_clv as c using (customer_id) order by f.customer_id"
    ).df()
    params = fit_clusters(frame, config, clv_col="predicted_clv")
    stored_fits.save(conn, stored_fits.SEGMENTS, cutoff, key, params, decision.reason, context=context)
    return params, decision, cutoff


RFM_SCRATCH = "ml._segment_rfm"
"""The store-wide RFM scores of one segmentation run (sql/segment_rfm.sql), dropped when it ends."""


def _write_segment_batches(conn, config: dict, params: dict, ranges, needed: list[str], cadence,
                           p_purchase: bool) -> tuple[int, dict[str, pd.Series]]:
    """scores.customer_segments batch by batch (``write_segments``): each batch is read ahead while
    the one before is assigned, and written in the background while the next is; returns the rows
    written and the segment sizes."""
    sizes: dict[str, pd.Series] = {}
    with BatchWriter(conn, SEGMENTS_TABLE, background=True) as writer:
        for _, frame in read_batches(conn, f"""
                select f.customer_id, {', '.join(f'f."{c}"' for c in needed)},
                       c.p_alive, c.predicted_clv, r.r_score, r.f_score, r.m_score
                       {', n.p_purchase_90d' if p_purchase else ''}
                from {FEATURE_TABLE} as f
                left join scores.customer_clv as c using (customer_id)
                join {RFM_SCRATCH} as r using (customer_id)
                {'left join scores.customer_npd as n using (customer_id)' if p_purchase else ''}
                where {{where}}
                order by f.customer_id""", ranges, column="f.customer_id", prefetch=True):
            out = rfm_from_scores(frame, config)
            out.insert(0, "customer_id", frame["customer_id"].to_numpy())
            out["lifecycle_stage"] = lifecycle_stages(frame, config, frame["p_alive"], cadence,
                                                      frame["p_purchase_90d"] if p_purchase else None).to_numpy()
            out["cluster_id"], out["cluster_name"] = assign_clusters(frame, params)
            out = out[SEGMENT_COLUMNS]
            writer.write(out)
            for column in ("rfm_segment", "lifecycle_stage", "cluster_name"):
                counts = out[column].value_counts()
                sizes[column] = counts if column not in sizes else sizes[column].add(counts, fill_value=0)
    return writer.rows, sizes


def write_segments(conn, config: dict, params: dict, batch: int, p_purchase: bool = False) -> dict:
    """scores.customer_segments in batches of ``batch`` customers with the clusters of ``params``;
    returns the segment sizes for the metadata. With ``p_purchase`` (a trained next-purchase model
    is served and scores.customer_npd holds its scores of this cutoff: ``trained_npd_scores``) the
    lifecycle rule reads its P(purchase within 90 days) too (``lifecycle.lifecycle_stages``)."""
    rfm, life = config["rfm"], _lifecycle_config(config)
    run_sql = read_sql("clv_platform.models", "sql/segment_rfm.sql").format(
        recency=_column(rfm["recency_column"]), frequency=_column(rfm["frequency_column"]),
        monetary=_column(rfm["monetary_column"]), bins=int(rfm.get("bins", 5)))
    # the pooled population interval of the lifecycle rule, over the whole store
    pooled = conn.execute(
        f"select {_column(life['interval_column'])}, {_column(life['frequency_column'])} from {FEATURE_TABLE}"
    ).df()
    cadence = population_cadence(pooled, config)
    rule = cadence_rule(cadence, repeat_buyers(pooled, config), config)
    del pooled
    ranges = customer_ranges(conn, FEATURE_TABLE, batch)
    # only the feature columns the lifecycle rule and the cluster assignment read leave DuckDB
    # (not the whole feature row, whose conversion to pandas grows with every feature added)
    needed = sorted({*params["features"],
                     *(life[c] for c in ("tenure_column", "recency_column", "interval_column", "frequency_column"))})
    for name in needed:  # feature names as the feature table spells them (T_days), checked before SQL
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise ValueError(f"segments.toml names the column {name!r}: expected an identifier")
    try:
        conn.execute(run_sql)
        rows, sizes = _write_segment_batches(conn, config, params, ranges, needed, cadence, p_purchase)
    finally:
        conn.execute(f"drop table if exists {RFM_SCRATCH}")
    cfg = config["clusters"]
    conn.execute(read_sql("clv_platform.models", "sql/cluster_summary.sql").format(
        revenue=_column(cfg["revenue_column"]), recency=_column(cfg["recency_column"]),
        frequency=_column(cfg["frequency_column"]), aov=_column(cfg["aov_column"])))
    return {"rows": rows, "batches": len(ranges), "sizes": sizes, "lifecycle_cadence": rule}


@dg.multi_asset(
    name="customer_segments",
    specs=[
        layer_spec(CUSTOMER_SEGMENTS, deps=[CUSTOMER_FEATURES, CUSTOMER_CLV, CUSTOMER_NPD],
                   kinds={"python", "scikitlearn", "duckdb"},
                   description="Per customer: RFM quintile scores and named segment (rules in models/segments.toml),\n"
                   "lifecycle stage (tenure, cadence-relative recency, probability alive, the served trained\n"
                   "next-purchase model's P(90 d)) and a KMeans cluster\n"
                   "with k chosen by silhouette (fitted weekly, stored, assigned nightly); the cluster summary\n"
                   "goes to ml.cluster_summary."),
        layer_spec(CLUSTER_SUMMARY, deps=[CUSTOMER_FEATURES, CUSTOMER_CLV], kinds={"python", "scikitlearn", "duckdb"},
                   description="One row per behavioural cluster of the segmentation written in the same run."),
    ],
)
def customer_segments(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """The segments and the summary of their clusters, one run for both so the summary always
    describes the clusters the customers carry."""
    config = load_config()
    settings = settings_of(duckdb)
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        params, decision, fit_cutoff = stored_or_fitted_clusters(context, conn, cutoff, config,
                                                                 settings.refit_after_days)
        npd, npd_why = trained_npd_scores(conn, cutoff)
        written = write_segments(conn, config, params, settings.batch_customers, p_purchase=npd is not None)
        summary = conn.execute(f"select * from {CLUSTER_SUMMARY_TABLE} order by cluster").df()
        summary_rows = row_count(conn, CLUSTER_SUMMARY_TABLE)
        contract.apply_comments(conn, tables=[SEGMENTS_TABLE, CLUSTER_SUMMARY_TABLE])
        schema = contract.column_metadata(conn, SEGMENTS_TABLE)
        summary_schema = contract.column_metadata(conn, CLUSTER_SUMMARY_TABLE)
    rows, k = written["rows"], int(params["k"])
    sizes = {column: counts.astype(int).sort_values(ascending=False).rename_axis(column).reset_index(name="customers")
             for column, counts in written["sizes"].items()}
    silhouette = pd.DataFrame({"k": [int(k) for k in params["silhouette"]],
                               "silhouette": list(params["silhouette"].values())})
    context.log.info(f"{rows} customers segmented; k={k}; clustering {decision.reason}")
    yield dg.MaterializeResult(
        asset_key=CUSTOMER_SEGMENTS,
        metadata={
            "dagster/row_count": rows,
            **schema,
            **decision.metadata(fit_cutoff),
            "batches": written["batches"],
            "k": k,
            # k = 1 (too few distinct customers to split) has no silhouette
            "silhouette": float(params["silhouette"].get(str(k), float("nan"))),
            "silhouette_by_k": dg.MetadataValue.md(silhouette.to_markdown(index=False)),
            "rfm_segment_sizes": dg.MetadataValue.md(sizes["rfm_segment"].to_markdown(index=False)),
            "lifecycle_stage_sizes": dg.MetadataValue.md(sizes["lifecycle_stage"].to_markdown(index=False)),
            "lifecycle_cadence": written["lifecycle_cadence"],
            # whether the served next-purchase model's P(90 d) waives the cadence test (lifecycle.py)
            "lifecycle_next_purchase": (f"P(purchase within 90 days) of {npd['model_version']}" if npd is not None
                                        else f"not read: {npd_why}"),
            "cluster_sizes": dg.MetadataValue.md(sizes["cluster_name"].to_markdown(index=False)),
            "cluster_summary": dg.MetadataValue.md(summary.to_markdown(index=False)),
        }
    )
    yield dg.MaterializeResult(asset_key=CLUSTER_SUMMARY,
                               metadata={"dagster/row_count": summary_rows, **summary_schema, "k": k})


SEGMENT_ASSETS = [customer_segments]
