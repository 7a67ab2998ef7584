"""ml/npd_model and scores/customer_npd: when will each customer buy next?

The model is XGBoost `survival:aft`, trained on features at C − H with the time to the
next purchase in (C − H, C] as label; customers who did not buy again by C are
right-censored at H (lower bound H, upper bound +inf) instead of being dropped.
"""

import json
import os
import tomllib
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import xgboost as xgb
from dagster_duckdb import DuckDBResource

from clv_platform.models import clv
from clv_platform.models.npd import NPDModel
from clv_platform.models.frames import usable_features
from clv_platform.models.npd_backtest import evaluate
from clv_platform.resources.storage import replace_table
from clv_platform.settings import load_settings
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_COLUMNS, FEATURE_TABLE, build_training_frame

FEATURES = dg.AssetKey(["features", "customer_features"])
NPD_MODEL_KEY = dg.AssetKey(["ml", "npd_model"])
# The label window of the survival model: long enough to observe repeat purchases of
# most cadences, short enough that the features at C − H are recent.
TRAINING_HORIZON_DAYS = 90
MODEL_PREFIX = "npd_aft_"


def npd_settings() -> dict:
    """The ``[npd]`` section of clv.toml (threads, row caps, scale search), with defaults."""
    with open(clv.default_config_path(), "rb") as handle:
        raw = tomllib.load(handle).get("npd", {})
    threads = int(raw.get("nthread", 1))
    return {
        "training_horizon_days": int(raw.get("training_horizon_days", TRAINING_HORIZON_DAYS)),
        "n_threads": threads if threads > 0 else max(os.cpu_count() or 1, 1),
        "max_selection_rows": int(raw.get("max_selection_rows", 0)),
        "max_training_rows": int(raw.get("max_training_rows", 0)),
        "scale_search": str(raw.get("scale_search", "grid")),
    }


def _models_dir():
    return load_settings().models_dir


def save_npd_model(model: NPDModel, meta: dict) -> str:
    """Booster + JSON sidecar under data/models, named by UTC time; returns the version."""
    version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    folder = _models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(folder / f"{MODEL_PREFIX}{version}.ubj"))
    sidecar = {
        "model_version": version,
        "distribution": model.distribution,
        "scale": model.scale,
        "horizons": list(model.horizons),
        "feature_cols": model.feature_cols_,
        "n_rounds": model.n_rounds_,
        "selection": model.selection_,
        **meta,
    }
    (folder / f"{MODEL_PREFIX}{version}.json").write_text(json.dumps(sidecar, indent=2, default=str))
    return version


def load_latest_npd_model() -> tuple[NPDModel, dict]:
    sidecars = sorted(_models_dir().glob(f"{MODEL_PREFIX}*.json"))
    if not sidecars:
        raise LookupError(
            f"no next-purchase model in {_models_dir()}: train one first with the refresh_everything or "
            "weekly_retrain job (or materialize ml/npd_model)"
        )
    meta = json.loads(sidecars[-1].read_text())
    model = NPDModel(distribution=meta["distribution"], scale=meta["scale"], horizons=tuple(meta["horizons"]))
    model.booster_ = xgb.Booster()
    model.booster_.load_model(str(sidecars[-1].with_suffix(".ubj")))
    model.feature_cols_ = list(meta["feature_cols"])
    model.n_rounds_ = int(meta["n_rounds"])
    return model, meta


@dg.asset(
    key=["ml", "npd_model"],
    group_name="ml",
    deps=[FEATURES, dg.AssetKey(["staging", "order_history"]), dg.AssetKey(["staging", "refunds"])],
    kinds={"python", "xgboost"},
    owners=["team:data-science"],
)
def npd_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """XGBoost survival:aft next-purchase model with right-censoring; distribution and scale
    chosen by validation negative log-likelihood (on a capped customer sample for large stores,
    see ``[npd]`` in clv.toml)."""
    settings = npd_settings()
    horizon = settings.pop("training_horizon_days")
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        frame = build_training_frame(conn, cutoff, horizon)
    features = usable_features(frame, FEATURE_COLUMNS)
    model = NPDModel(**settings).fit(frame, features)
    censored = float(frame["days_to_next_purchase"].isna().mean())
    n_train = min(len(frame), settings["max_training_rows"] or len(frame))
    version = save_npd_model(
        model, {"cutoff": str(cutoff), "training_horizon_days": horizon,
                "n_train": n_train, "n_rows": len(frame), "censored_share": censored,
                "max_selection_rows": settings["max_selection_rows"],
                "max_training_rows": settings["max_training_rows"], "scale_search": settings["scale_search"]},
    )
    backtest = _time_split_backtest(duckdb, cutoff, horizon, frame, features, model, settings)
    # In-sample calibration on the training window: mean predicted vs observed 30/90-day purchase.
    pred = model.predict(frame)
    observed = {h: float((frame["days_to_next_purchase"] <= h).mean()) for h in (30, 90)}
    selection = pd.DataFrame(model.selection_).sort_values("valid_nloglik")
    context.log.info(f"npd model {version}: {model.distribution}/{model.scale}, {censored:.0%} censored")
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "cutoff": str(cutoff),
            "training_horizon_days": horizon,
            "n_train": n_train,
            "n_rows": len(frame),
            "censored_share": censored,
            "distribution": model.distribution,
            "scale": float(model.scale),
            "rounds": model.n_rounds_,
            "selection": dg.MetadataValue.md(selection.head(10).to_markdown(index=False)),
            "p30_mean_vs_observed": f"{pred['p_purchase_30d'].mean():.3f} vs {observed[30]:.3f}",
            "p90_mean_vs_observed": f"{pred['p_purchase_90d'].mean():.3f} vs {observed[90]:.3f}",
            "features": dg.MetadataValue.json(features),
            "backtest": dg.MetadataValue.json(backtest),
        }
    )


def _time_split_backtest(duckdb, cutoff, horizon: int, holdout: pd.DataFrame, features: list[str],
                         chosen: NPDModel, settings: dict) -> dict:
    """Out-of-time check shown in the UI: the chosen model shape trained one window earlier
    (features at C − 2H, labels in (C − 2H, C − H]) and scored on the latest window
    (features at C − H, outcomes in (C − H, C]): MAE in days for buyers, AUC and Brier at 30/90 days.
    """
    with duckdb.get_connection() as conn:
        earlier = build_training_frame(conn, cutoff - timedelta(days=horizon), horizon)
    try:
        model = NPDModel(**{**settings, "distribution": chosen.distribution, "scale": chosen.scale})
        model.fit(earlier, features)
    except ValueError as exc:  # too little history for a second window
        return {"skipped": str(exc)}
    predictions = model.predict(holdout, within_days=horizon)
    actual = holdout["days_to_next_purchase"].to_numpy(dtype=float)
    result = evaluate(actual, predictions, tuple(model.horizons))
    result["train_window_end"] = str(cutoff - timedelta(days=horizon))
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in result.items()}


@dg.asset(
    key=["scores", "customer_npd"],
    group_name="scores",
    deps=[FEATURES, NPD_MODEL_KEY],
    kinds={"python", "duckdb"},
    owners=["team:data-science"],
)
def customer_npd(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Per customer: predicted next purchase date (median of the survival curve) and the
    probability of a purchase within 30 and within 90 days, from the latest NPD model."""
    model, meta = load_latest_npd_model()
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        frame = conn.execute(f"select * from {FEATURE_TABLE}").df()
        pred = model.predict(frame, cutoff=pd.Timestamp(cutoff))
        scores = pd.DataFrame(
            {
                "customer_id": frame["customer_id"].to_numpy(),
                "days_to_next_purchase": pred["days_to_next"].to_numpy(),
                "predicted_next_purchase_date": pd.to_datetime(pred["predicted_next_purchase_date"]).dt.date.to_numpy(),
                "p_purchase_30d": pred["p_purchase_30d"].to_numpy(),
                "p_purchase_90d": pred["p_purchase_90d"].to_numpy(),
                "model_version": meta["model_version"],
                "scored_at": scored_at,
            }
        )
        rows = replace_table(conn, "scores.customer_npd", scores)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "model_version": meta["model_version"],
            "mean_p_purchase_30d": float(scores["p_purchase_30d"].mean()),
            "mean_p_purchase_90d": float(scores["p_purchase_90d"].mean()),
            "expected_buyers_next_30d": float(scores["p_purchase_30d"].sum()),
            "preview": dg.MetadataValue.md(scores.head(5).to_markdown(index=False)),
        }
    )


NPD_ASSETS = [npd_model, customer_npd]
