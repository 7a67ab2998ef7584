"""scores/customer_npd: each customer's next-purchase probabilities and date from the served model.

The served next-purchase model (``ml/npd_model``, the newest registered ``npd_aft`` run) is either
the trained XGBoost AFT model or, for a history too short to train it, the BTYD fallback
(``npd.BTYDNextPurchase``), whose curve is the BTYD fit ``ml/btyd_scores`` serves. Both go through
the one date contract (``npd.next_purchase_contract``). The asset sits beside ``ml/btyd_scores``'s
module rather than in ``npd_assets`` because the fallback reads that asset's table and fit.
"""

from datetime import datetime, timezone

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.assets import layer_asset
from clv_platform.models import registry, stored_fits
from clv_platform.models.clv_assets import BTYD_KEY, BTYD_TABLE, CUSTOMER_NPD, NPD_TABLE
from clv_platform.models.npd import BTYDNextPurchase
from clv_platform.models.npd_assets import (FEATURES, NPD_MODEL_KEY, date_settings, load_latest_npd_model,
                                            write_npd_scores)
from clv_platform.models.npd_backtest import order_calendar_at, trained_model_calendar
from clv_platform.resources.storage import settings_of
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE

BTYD_INPUTS = ["frequency", "recency_weeks", "T_weeks"]
"""What the BTYD fallback reads of ml.btyd_scores per customer (the BTYD's own inputs, in weeks)."""


class BtydScoresStale(RuntimeError):
    """ml.btyd_scores does not hold this cutoff's customers, so the fallback has no curve to serve."""


def served_btyd_timing(conn, cutoff) -> tuple[BTYDNextPurchase, dict]:
    """The BTYD fallback's curve: the fit ``ml/btyd_scores`` served at ``cutoff`` (``ml.stored_fits``)
    and what it rests on, for the metadata. Fails when ml.btyd_scores is of another cutoff or lacks
    customers of the feature table: scoring them from another day's inputs would be silently wrong."""
    stored = stored_fits.load(conn, stored_fits.BTYD)
    if stored is None:
        raise BtydScoresStale("the next-purchase model is the BTYD fallback but no BTYD fit is stored: "
                              "materialize ml/btyd_scores first")
    features, scored, other = conn.execute(f"""
        select (select count(*) from {FEATURE_TABLE}),
               (select count(*) from {BTYD_TABLE} where cutoff = ?),
               (select count(*) from {BTYD_TABLE} where cutoff <> ?)""", [cutoff, cutoff]).fetchone()
    if scored != features or other:
        raise BtydScoresStale(f"{BTYD_TABLE} holds {scored} customers at the cutoff {cutoff} and {other} at another "
                              f"cutoff; the features hold {features}: materialize ml/btyd_scores first")
    model = stored_fits.btyd_from_params(stored.params)
    return BTYDNextPurchase(model.transactions), {"btyd_model": model.model, "btyd_fit_cutoff": str(stored.fit_cutoff)}


@layer_asset(CUSTOMER_NPD, deps=[FEATURES, NPD_MODEL_KEY, BTYD_KEY], kinds={"python", "duckdb"})
def customer_npd(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Per customer: P(next purchase within 7 / 30 / 90 days) and a next purchase date that agrees
    with them - the median time *given a purchase within 90 days*, shown only when that purchase
    has P >= 0.25 (``npd.next_purchase_contract``, ``[npd]`` in clv.toml) - from the served
    (latest registered) next-purchase model: the trained AFT model, or the BTYD fallback when the
    history was too short to train it (metadata ``serves``, ``serving_reason``)."""
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    settings = date_settings()
    batch = settings_of(duckdb).batch_customers
    with duckdb.get_connection() as conn:
        model, meta = load_latest_npd_model(conn)
        cutoff = scoring_cutoff(conn)
        # a store whose orders fall on a few days of each cycle (invoicing dates): the BTYD's chances and
        # dates on them; a store closed for a season: every model's (``trained_model_calendar``)
        calendar = order_calendar_at(conn, cutoff)
        calendar = calendar if model is None else trained_model_calendar(calendar)
        if model is None:
            fallback, serving = served_btyd_timing(conn, cutoff)
            written = write_npd_scores(conn, fallback, cutoff, settings, meta["model_version"], scored_at, batch,
                                       table=BTYD_TABLE, columns=BTYD_INPUTS, calendar=calendar)
            serving = {"serves": "btyd", "serving_reason": str(meta.get("serving_reason", "")), **serving}
        else:
            columns = conn.execute(f"select * from {FEATURE_TABLE} limit 0").df().columns
            registry.require_features(registry.NPD_MODEL_NAME, meta["model_version"], model.feature_cols_, columns)
            # the trained model learned a short rhythm from label windows that start months before the cutoff
            written = write_npd_scores(conn, model, cutoff, settings, meta["model_version"], scored_at, batch,
                                       calendar=calendar)
            serving = {"serves": "aft", "serving_reason": "trained: the XGBoost survival:aft model"}
        rows = written["rows"]
        contract.apply_comments(conn, tables=[NPD_TABLE])
        schema = contract.column_metadata(conn, NPD_TABLE)
        summary = conn.execute(f"""
            select count(predicted_next_purchase_date), avg(p_purchase_7d), avg(p_purchase_30d), avg(p_purchase_90d),
                   sum(p_purchase_7d), sum(p_purchase_30d), sum(p_purchase_90d),
                   count(*) filter (where days_to_next_purchase <= 7), count(*) filter (where days_to_next_purchase <= 30)
            from {NPD_TABLE}""").fetchone()
        scores = conn.execute(f"select * from {NPD_TABLE} order by customer_id limit 5").df()
    if serving["serves"] == "btyd":
        context.log.info(f"scored {rows} customers with the BTYD next-purchase fallback {meta['model_version']} "
                         f"({serving['btyd_model']} fitted at {serving['btyd_fit_cutoff']}): {serving['serving_reason']}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "model_version": meta["model_version"],
            **serving,
            "date_window_days": settings["window_days"],
            "date_min_probability": settings["min_probability"],
            "order_calendar": (calendar.describe() if calendar else
                               "the trained model's (it learns when orders come from its label windows)"
                               if model is not None else "every day (no regular rhythm of order days)"),
            "batches": written["batches"],
            "customers_with_date": int(summary[0]),
            **{f"mean_p_purchase_{h}d": float(summary[1 + i] or 0.0) for i, h in enumerate((7, 30, 90))},
            **{f"expected_buyers_next_{h}d": float(summary[4 + i] or 0.0) for i, h in enumerate((7, 30, 90))},
            "dated_within_7d": int(summary[7]),
            "dated_within_30d": int(summary[8]),
            "preview": dg.MetadataValue.md(scores.head(5).to_markdown(index=False)),
        }
    )


NPD_SCORE_ASSETS = [customer_npd]
