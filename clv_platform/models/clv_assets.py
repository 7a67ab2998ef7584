"""ml/btyd_scores, ml/clv_model and scores/customer_clv: probabilistic and machine-learned CLV per customer.

All three work at the scoring cutoff C (``scoring_cutoff``) with the settings of ``clv.toml``:
``ml/btyd_scores`` fits the BTYD models on the features at C; ``ml/clv_model`` trains the hybrid XGBoost
model on time-split windows ending at or before C, registers it and explains it with SHAP;
``scores/customer_clv`` scores every customer with the latest registered model.
"""

import json
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.assets import layer_asset, layer_spec
from clv_platform.models import clv, registry
from clv_platform.models.registry_view import create_model_registry_view
from clv_platform.reports import float_metrics, prune_reports, report_url
from clv_platform.resources.storage import replace_table, reports_dir
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES
from clv_platform.transforms.staging_assets import CUSTOMERS, ORDER_HISTORY, ORDER_LINES, REFUNDS

FEATURES = CUSTOMER_FEATURES
STAGING_INPUTS = [ORDER_HISTORY, ORDER_LINES, REFUNDS, CUSTOMERS]
# Asset keys, declared once, each beside the DuckDB table it names.
BTYD_KEY = dg.AssetKey(["ml", "btyd_scores"])
BTYD_TABLE = "ml.btyd_scores"
CLV_MODEL_KEY = dg.AssetKey(["ml", "clv_model"])  # files under data/models, rows in ml.model_runs
# written by ml/clv_model with the model they explain (specs of its multi-asset)
FEATURE_IMPORTANCE = dg.AssetKey(["ml", "clv_feature_importance"])
IMPORTANCE_TABLE = "ml.clv_feature_importance"
FEATURE_INTERACTIONS = dg.AssetKey(["ml", "clv_feature_interactions"])
INTERACTIONS_TABLE = "ml.clv_feature_interactions"
CUSTOMER_CLV = dg.AssetKey(["scores", "customer_clv"])
SCORES_TABLE = "scores.customer_clv"


def _total_errors(trained) -> dict:
    """predicted / actual total - 1 on the validation window, for the served model and the BTYD."""
    out = {}
    for name, block in (("total_error", trained.validation_metrics), ("btyd_total_error", trained.serving.get("btyd_metrics"))):
        actual = (block or {}).get("actual_total")
        if actual:
            out[name] = float(block["predicted_total"]) / float(actual) - 1.0
    return out


def _md(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=".4g"))


def _features(conn) -> pd.DataFrame:
    return conn.execute(f"select * from {FEATURE_TABLE} order by customer_id").df()


@layer_asset(BTYD_KEY, deps=[FEATURES], kinds={"python", "duckdb"})
def btyd_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """BG/NBD (or Pareto/NBD, per clv.toml) + Gamma-Gamma fitted on the customer features at the
    scoring cutoff (distinct frequency/recency/T combinations, weighted); writes ml.btyd_scores with
    p_alive, expected purchases, expected order value and discounted CLV over the horizon per customer.
    """
    config = clv.load_config()
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        features = _features(conn)
        frame, model = clv.scoring_frame(conn, cutoff, config, features=features)
        table = clv.btyd_scores_table(frame, model, config, cutoff)
        rows = replace_table(conn, BTYD_TABLE, table)
        contract.apply_comments(conn, tables=[BTYD_TABLE])
        schema = contract.column_metadata(conn, BTYD_TABLE)
    params = model.params()
    context.log.info(f"{model.model} fitted on {rows} customers as of {cutoff}: {params['transaction_params']}; "
                     f"{model.reason}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "cutoff": str(cutoff),
            "model": model.model,
            "model_choice": model.reason or f"{model.model} set in clv.toml",
            "penalizer": float(model.penalizer),
            "candidates": _md(pd.DataFrame([{k: v for k, v in row.items() if k != "params"}
                                            for row in model.selection]) if model.selection else
                              pd.DataFrame({"family": [model.model]})),
            "horizon_days": config.horizon_days,
            "transaction_params": dg.MetadataValue.json(params["transaction_params"]),
            "spend_params": dg.MetadataValue.json(params["spend_params"]),
            "log_likelihood": float(model.log_likelihood),
            "spend_customers_fitted": params["spend_n_fitted"],
            "spend_excluded_nonpositive": params["spend_n_excluded_nonpositive"],
            "mean_p_alive": float(table["p_alive"].mean()),
            **({"mean_p_alive_one_time_buyers": float(table.loc[table["frequency"] == 0, "p_alive"].mean())}
               if (table["frequency"] == 0).any() else {}),
            "total_expected_spend": float(table["expected_spend"].sum()),
            "preview": _md(table.sort_values("clv", ascending=False)),
        }
    )


CLV_MODEL_DESCRIPTION = """Hybrid XGBoost CLV model trained on time-split windows from staging (features at C − H,
label = net spend in (C − H, C]) with BTYD features fitted per window; the objective is chosen on
an inner validation window. Registers the model (data/models + ml.model_runs) and stores global
SHAP importance and top interactions with a bar chart under data/reports."""


def _model_spec(key: dg.AssetKey, description: str | None = None) -> dg.AssetSpec:
    """The model and its SHAP tables share group, inputs and owner: one place for all three."""
    return layer_spec(key, deps=[FEATURES, BTYD_KEY, *STAGING_INPUTS], kinds={"python", "duckdb", "xgboost"},
                      description=description)


@dg.multi_asset(
    name="clv_model",
    specs=[
        _model_spec(CLV_MODEL_KEY, CLV_MODEL_DESCRIPTION),
        _model_spec(FEATURE_IMPORTANCE, "Global SHAP importance per feature of the model trained in the same run."),
        _model_spec(FEATURE_INTERACTIONS, "Top SHAP feature interactions of the model trained in the same run."),
    ],
)
def clv_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """The hybrid CLV model and its SHAP tables (``CLV_MODEL_DESCRIPTION``), one run for all three
    because the tables explain the booster this run trained."""
    config = clv.load_config()
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        trained = clv.train_clv(conn, cutoff, config, clv.HYBRID)
        gate = registration_gate(conn, trained)
        record = registry.save_model(conn, trained, config, register=gate["register"])
        context.log_event(registry.model_runs_event(record.name, record.version, gate["register"]))
        frame = clv.frame_from_tables(_features(conn), conn.execute(f"select * from {BTYD_TABLE}").df())
        importance = clv.shap_importance(trained.model, frame, config.shap_sample)
        interactions = clv.shap_interactions(trained.model, frame, config.interaction_sample, config.top_interactions)
        side = {}
        for table, name in ((importance, IMPORTANCE_TABLE), (interactions, INTERACTIONS_TABLE)):
            rows = replace_table(conn, name, table.assign(model_name=record.name, model_version=record.version))
            contract.apply_comments(conn, tables=[name])
            side[name] = {"dagster/row_count": rows, **contract.column_metadata(conn, name),
                          "model_name": record.name, "model_version": record.version}
        create_model_registry_view(conn)
        registry_md = conn.execute(
            "select model_version, status, objective, mae, normalized_gini from ml.model_registry limit 10"
        ).df().to_markdown(index=False, floatfmt=".4g")
    reports = reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    plot = reports / f"clv_explainability_{record.version}.html"
    plot.write_text(
        clv.explainability_html(
            importance, interactions,
            f"CLV model {record.name} {record.version}: mean |SHAP| in the booster's margin units "
            f"({trained.model.objective.name}; log of spend for log-link objectives, spend in the shop "
            "currency otherwise)",
        ),
        encoding="utf-8",
    )
    pruned = prune_reports("clv_explainability_")
    drift_reports = sorted(reports.glob("drift_*.html"))
    comparison = pd.DataFrame(trained.selection.comparison).drop(columns=["params"])
    if gate["register"]:
        context.log.info(f"registered {record.name} {record.version} ({trained.model.objective.name}); "
                         f"{trained.serving.get('reason', '')}")
    else:
        context.log.warning(f"{record.name} {record.version} NOT registered, scores keep the previous model: "
                            f"{gate['reason']}")
    yield dg.MaterializeResult(
        asset_key=CLV_MODEL_KEY,
        metadata={
            "model_name": record.name,
            "model_version": record.version,
            "registered": gate["register"],
            "registration": gate["reason"],
            "served_version_compared": gate.get("served_version") or "",
            "serves": trained.serving.get("served", clv.HYBRID),
            "serving_reason": trained.serving.get("reason", ""),
            "level_factor": float(trained.model.level),
            "extension_factor": float(trained.model.extension_factor),
            "extension": dg.MetadataValue.json(trained.serving.get("extension") or {}),
            "btyd_validation_metrics": dg.MetadataValue.json(trained.serving.get("btyd_metrics") or {}),
            "served_metrics_same_window": dg.MetadataValue.json(gate.get("served_metrics") or {}),
            "cutoff": str(cutoff),
            "objective": trained.model.objective.name,
            "selection_metric": trained.selection.metric,
            "objective_comparison": _md(comparison, rows=len(comparison)),
            "validation_metrics": dg.MetadataValue.json(trained.validation_metrics),
            # one float per metric, so the Plots tab draws each across model versions
            **float_metrics(trained.validation_metrics, prefix="validation_"),
            # the served model's and the BTYD's total error on the same window, and the BTYD's metrics
            **float_metrics(_total_errors(trained), prefix="validation_"),
            **float_metrics(trained.serving.get("btyd_metrics"), prefix="btyd_validation_"),
            "blend_weight": float(trained.model.blend),
            "model_registry": dg.MetadataValue.md(registry_md),
            "n_train": trained.n_train,
            "num_boost_round": trained.model.num_boost_round,
            "window_ends": dg.MetadataValue.json(trained.window_ends),
            "features": dg.MetadataValue.json(trained.model.features),
            "top_features": _md(importance[["rank", "feature", "mean_abs_shap"]]),
            "top_interactions": _md(interactions[["rank", "feature_a", "feature_b", "mean_abs_interaction"]]),
            "booster_path": dg.MetadataValue.path(str(record.booster_path)),
            "explainability_plot": dg.MetadataValue.path(str(plot)),
            "explainability_url": dg.MetadataValue.url(report_url(plot)),
            # the newest drift report (monitoring/drift_runs) so far, and the folder of all reports
            **({"latest_drift_report_url": dg.MetadataValue.url(report_url(drift_reports[-1]))} if drift_reports else {}),
            "all_reports_url": dg.MetadataValue.url(report_url(reports)),
            "reports_pruned": len(pruned),
        }
    )
    yield dg.MaterializeResult(asset_key=FEATURE_IMPORTANCE, metadata=side[IMPORTANCE_TABLE])
    yield dg.MaterializeResult(asset_key=FEATURE_INTERACTIONS, metadata=side[INTERACTIONS_TABLE])


@layer_asset(CUSTOMER_CLV, deps=[FEATURES, BTYD_KEY, CLV_MODEL_KEY], kinds={"python", "duckdb"})
def customer_clv(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One row per customer: discounted predicted CLV over the horizon from the latest registered
    model, BTYD p_alive and expected purchases, rank, percentile and tier (Top 1% … Rest).
    """
    config = clv.load_config()
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        model, sidecar = registry.load_latest(conn)
        frame = clv.frame_from_tables(_features(conn), conn.execute(f"select * from {BTYD_TABLE}").df())
        registry.require_features(registry.DEFAULT_MODEL_NAME, sidecar["model_version"], model.features, frame.columns)
        scores = clv.assign_tiers(clv.predict_scores(model, frame, config))
        scores = scores.assign(model_version=sidecar["model_version"], scored_at=scored_at)
        rows = replace_table(conn, SCORES_TABLE, scores)
        contract.apply_comments(conn, tables=[SCORES_TABLE])
        schema = contract.column_metadata(conn, SCORES_TABLE)
    tiers = (
        scores.groupby("clv_tier")
        .agg(customers=("customer_id", "size"), total_clv=("predicted_clv", "sum"), mean_clv=("predicted_clv", "mean"))
        .reindex([label for label, _ in clv.TIERS] + [clv.REST])
        .dropna(how="all")
        .reset_index()
    )
    context.log.info(f"scored {rows} customers with {sidecar['model_name']} {sidecar['model_version']}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "model_version": sidecar["model_version"],
            "total_predicted_clv": round(float(scores["predicted_clv"].sum()), 2),
            **total_interval(scores),
            "mean_predicted_clv": round(float(scores["predicted_clv"].mean()), 2),
            "tiers": dg.MetadataValue.md(
                tiers.astype({"customers": int}).to_markdown(index=False, floatfmt=",.2f")
            ),
            "validation_metrics": dg.MetadataValue.json(json.loads(json.dumps(sidecar["validation_metrics"]))),
            "preview": _md(scores.sort_values("clv_rank")),
        }
    )


def served_metrics_on(conn, trained: clv.TrainedClv, name: str = registry.DEFAULT_MODEL_NAME) -> tuple[str | None, dict | None]:
    """(served version, its metrics on the candidate's validation rows) - (None, None) when nothing
    is registered, (version, None) when the served model cannot be scored on those rows."""
    from clv_platform.models import metrics

    served = registry.latest_registered(conn, name)
    if served is None:
        return None, None
    frame = trained.validation_frame
    try:
        model, _ = registry.load_model(served["path"])
        predicted = model.predict_label_window(frame)
    except (KeyError, ValueError, FileNotFoundError, TypeError):
        return served["model_version"], None
    return served["model_version"], metrics.regression_metrics(frame["label_spend"].to_numpy(dtype=float), predicted)


def total_interval(scores: pd.DataFrame) -> dict:
    """80 % interval of the store's total CLV, from the per-customer P10 / P90.

    Customers are independent given the model, so the total is close to normal (many customers):
    per-customer sd ~ (P90 - P10) / 2.563 (the normal's P10-P90 width), total = sum +- 1.2816 sd
    of the sum. Backtests measure its coverage with exact draws (``backtest.interval_metrics``);
    parameter uncertainty is not included, so the interval is narrow.
    """
    if "predicted_clv_p10" not in scores:
        return {}
    sd = (scores["predicted_clv_p90"] - scores["predicted_clv_p10"]).to_numpy(dtype=float) / 2.5631
    total, spread = float(scores["predicted_clv"].sum()), 1.2816 * float(np.sqrt(np.sum(sd ** 2)))
    return {"total_predicted_clv_p10": max(total - spread, 0.0), "total_predicted_clv_p90": total + spread,
            "mean_predicted_clv_p10": float(scores["predicted_clv_p10"].mean()),
            "mean_predicted_clv_p90": float(scores["predicted_clv_p90"].mean())}


def registration_gate(conn, trained: clv.TrainedClv) -> dict:
    """Register the candidate only if it is not worse than the served model on the same window.

    The candidate's metrics are its out-of-sample validation metrics (the selection run trained on
    windows ending at or before C - h, scored on the window ending at C); the served model is scored
    on exactly those rows. The served model may have seen part of that window in training, which
    favours it: the gate errs on the side of keeping what is served. Scoring always uses the newest
    *registered* model, so a refused candidate never reaches customers.
    """
    from clv_platform.core.thresholds import monitoring_config

    version, served = served_metrics_on(conn, trained)
    decision = registry.decide(trained.validation_metrics, served, monitoring_config().model_regression, version)
    decision["served_metrics"] = served
    return decision


CLV_ASSETS = [btyd_scores, clv_model, customer_clv]
