"""ml/npd_model: when will each customer buy next? (scored by ``npd_score_assets``)

The model is XGBoost `survival:aft`, trained on features at C − H with the time to the
next purchase in (C − H, C] as label; customers who did not buy again by C are
right-censored at H (lower bound H, upper bound +inf) instead of being dropped. A history too
short for that (``npd.HistoryTooShort``: fewer than ten customers at C − H, or none of them bought
again) registers the BTYD fallback instead (``npd.BTYDNextPurchase``, no booster): the served
BTYD fit read as a purchase-timing curve, registered only when no next-purchase model is served.
"""

import copy
import json
import os
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import xgboost as xgb
from dagster_duckdb import DuckDBResource

from clv_platform.models import clv, registry, stored_fits
from clv_platform.core.assets import layer_asset
from clv_platform.core.thresholds import ModelRegressionSettings
from clv_platform.models.npd import (BTYD_ONLY, DATE_MIN_PROBABILITY, DATE_WINDOW_DAYS, BTYDNextPurchase,
                                     HistoryTooShort, NPDModel, next_purchase_contract,
                                     predict_on_calendar)
from clv_platform.reports import float_metrics
from clv_platform.models.frames import usable_features
from clv_platform.models.npd_backtest import (alive_test, baseline_on, earns_its_place, evaluate, order_calendar_at,
                                             season_check, season_frames, season_validation, time_split_backtest,
                                             with_season)
from clv_platform.core.batches import BatchWriter, customer_ranges, read_batches
from clv_platform.settings import load_settings
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.models.sampling import TrainingFrames
from clv_platform.transforms.features import FEATURE_COLUMNS, FEATURE_TABLE
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES
from clv_platform.transforms.order_gaps import gaps_after
from clv_platform.transforms.staging_assets import ORDER_HISTORY, REFUNDS

FEATURES = CUSTOMER_FEATURES
# Asset key, declared once (files under data/models, rows in ml.model_runs)
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


def npd_fetch_rows(settings: dict) -> int | None:
    """Rows of a training window the NPD model needs (None = all): the larger of its two caps, since
    the search's and the refit's samples are both the smallest customer keys
    (``npd._sample_positions``), so a window sampled to the larger cap in SQL gives the model the
    rows the whole window would. Either cap at 0 (no cap) needs the whole window."""
    if not settings["max_selection_rows"] or not settings["max_training_rows"]:
        return None
    return max(settings["max_selection_rows"], settings["max_training_rows"])


def _models_dir():
    return load_settings().models_dir


def _new_version() -> tuple[str, datetime, Path]:
    """A new version (UTC time to the microsecond) and its sidecar path under data/models."""
    trained_at = datetime.now(timezone.utc)
    version = trained_at.strftime("%Y%m%dT%H%M%S%fZ")
    folder = _models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return version, trained_at, folder / f"{MODEL_PREFIX}{version}.json"


def _write_sidecar(path: Path, sidecar: dict) -> None:
    path.write_text(json.dumps({"model_version": path.stem.removeprefix(MODEL_PREFIX), **sidecar}, indent=2,
                               default=str))


def save_npd_model(model: NPDModel, meta: dict, conn=None, register: bool = True, metrics: dict | None = None) -> str:
    """Booster + JSON sidecar under data/models, named by UTC time; returns the version.

    With ``conn`` the run is also recorded in ``ml.model_runs`` (model name ``npd_aft``) with
    ``register`` as its registration flag - the registry shared with the CLV model.
    """
    version, trained_at, path = _new_version()
    model.booster_.save_model(str(path.with_suffix(".ubj")))
    _write_sidecar(path, {
        "serves": "aft",
        "distribution": model.distribution,
        "scale": model.scale,
        "horizons": list(model.horizons),
        "feature_cols": model.feature_cols_,
        "n_rounds": model.n_rounds_,
        "selection": model.selection_,
        **meta,
    })
    if conn is not None:
        registry.record_run(conn, registry.NPD_MODEL_NAME, version, trained_at, meta.get("cutoff"),
                            int(meta.get("training_horizon_days", 0)), f"{model.distribution}/{model.scale}",
                            int(meta.get("n_train", 0)), metrics or {}, path, register)
    return version


def save_npd_fallback(meta: dict, conn, register: bool, metrics: dict | None = None) -> str:
    """The BTYD fallback (``npd.BTYDNextPurchase``) as a next-purchase model: a sidecar only (no
    booster: ``booster_file`` null, its ``ml.model_runs`` path the sidecar, objective ``btyd_only``),
    recorded in ``ml.model_runs`` with ``register``. Its predictions come from the BTYD fit that
    ``ml/btyd_scores`` serves at scoring time, as the CLV side's BTYD-only model does."""
    version, trained_at, path = _new_version()
    _write_sidecar(path, {
        "serves": "btyd", "booster_file": None, "objective": BTYD_ONLY, "horizons": [7, 30, 90],
        "feature_cols": [], **meta})
    registry.record_run(conn, registry.NPD_MODEL_NAME, version, trained_at, meta.get("cutoff"),
                        int(meta.get("training_horizon_days", 0)), BTYD_ONLY, 0, metrics or {}, path, register)
    return version


def is_btyd_fallback(meta: dict) -> bool:
    """Whether a next-purchase sidecar is the BTYD fallback (no booster) rather than a trained model."""
    return meta.get("serves") == "btyd"


def load_npd_model(path) -> tuple[NPDModel | None, dict]:
    """A saved next-purchase model from its sidecar (``.json``) path; (None, sidecar) for the BTYD
    fallback (``is_btyd_fallback``), whose curve is the served BTYD fit at scoring time."""
    meta = registry.read_sidecar(path)
    if is_btyd_fallback(meta):
        return None, meta
    model = NPDModel(distribution=meta["distribution"], scale=meta["scale"], horizons=tuple(meta["horizons"]))
    model.horizons = tuple(sorted({*model.horizons, 7, 30, 90}))  # horizons are read-outs of one curve
    model.booster_ = xgb.Booster()
    model.booster_.load_model(str(Path(path).with_suffix(".ubj")))
    model.feature_cols_ = list(meta["feature_cols"])
    model.n_rounds_ = int(meta["n_rounds"])
    return model, meta


def load_latest_npd_model(conn) -> tuple[NPDModel | None, dict]:
    """The served next-purchase model: the newest *registered* ``npd_aft`` run of ``ml.model_runs``
    (None for the BTYD fallback, see ``load_npd_model``). Raises LookupError when none is registered,
    as the CLV model's ``registry.load_latest`` does: a model file without its registry row (a
    database rebuilt beside an old models folder, a candidate the gate refused) is never served."""
    row = registry.latest_registered(conn, registry.NPD_MODEL_NAME)
    if row is None:
        raise LookupError(
            f"no registered model named {registry.NPD_MODEL_NAME!r} in {registry.MODEL_RUNS_TABLE}: train one "
            "first with the refresh_everything or retrain_models job (or materialize ml/npd_model)"
        )
    return load_npd_model(row["path"])


NPD_REGISTRATION = ModelRegressionSettings(margin=0.02, metrics={"auc_30d": "higher", "brier_30d": "lower"})
"""Next-purchase registration: AUC and Brier score of P(purchase within 30 days) on the latest window."""


def btyd_baseline(conn, holdout: pd.DataFrame, horizon: int,
                  probabilities: dict | None = None) -> tuple[dict | None, str]:
    """(metrics, note) of the BTYD fallback on ``holdout`` (``fallback_metrics``, started from the
    served fit's Pareto/NBD parameters), or (None, why) when no BTYD can be fitted on it."""
    return baseline_on(holdout, horizon, stored_fits.served_pareto_start(conn), probabilities)


def npd_registration_gate(conn, holdout: pd.DataFrame, candidate_metrics: dict, horizon: int,
                          baseline: tuple[dict | None, str] | None = None) -> dict:
    """Register the NPD candidate only if it is not worse than the served model on the same window.

    ``candidate_metrics``: the candidate's shape trained one window earlier (features at C - 2H),
    scored on ``holdout`` (features at C - H, outcomes in (C - H, C]) - out of sample. The served
    model is scored on the same ``holdout`` rows; a served BTYD fallback as it would have been
    served at C - H, with a BTYD fitted on the holdout's features: ``baseline`` when the caller has
    it already (``btyd_baseline`` on the same ``holdout``), else fitted here. A trained served model
    may have seen part of that window in training (a retrain a week after the last one: its labels
    end a week before C), which favours it: like the CLV gate (``clv_assets.registration_gate``), this
    one errs on the side of keeping what is served; ``NPD_REGISTRATION``'s margin (0.02) lets a
    candidate through a small in-sample lead of the served model.
    """
    served_row = registry.latest_registered(conn, registry.NPD_MODEL_NAME)
    if served_row is None:
        return registry.decide(candidate_metrics, None, NPD_REGISTRATION, None)
    fallback = False
    try:
        served, _ = load_npd_model(served_row["path"])
        if served is None:
            fallback = True
            served_metrics = (baseline or btyd_baseline(conn, holdout, horizon))[0]
        else:
            predictions = served.predict(holdout, within_days=horizon)
            served_metrics = evaluate(holdout["days_to_next_purchase"].to_numpy(dtype=float), predictions,
                                      tuple(served.horizons))
    except (KeyError, ValueError, FileNotFoundError):
        served_metrics = None
    decision = registry.decide(candidate_metrics, served_metrics, NPD_REGISTRATION, served_row["model_version"])
    if fallback and served_metrics is None:
        decision["reason"] = (f"the served {served_row['model_version']} is the BTYD fallback, which could not be "
                              "fitted on this window: the trained model replaces it")
    if fallback and not decision["register"] and candidate_metrics.get("season_evidence"):
        # the comparison earns_its_place made already, with the season it did not see here
        decision["register"] = True
        decision["reason"] = (f"{decision['reason']}; registered all the same: the served "
                              f"{served_row['model_version']} is the BTYD fallback, and the candidate predicted the "
                              "coming season of a year ago better beyond noise (season_evidence)")
    decision["served_metrics"] = served_metrics
    return decision


@layer_asset(NPD_MODEL_KEY, deps=[FEATURES, ORDER_HISTORY, REFUNDS], kinds={"python", "xgboost"})
def npd_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """XGBoost survival:aft next-purchase model with right-censoring; distribution and scale
    chosen by validation negative log-likelihood (on a capped customer sample for large stores,
    see ``[npd]`` in clv.toml)."""
    settings = npd_settings()
    horizon = settings.pop("training_horizon_days")
    rows = npd_fetch_rows(settings)
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        # both windows customer-sampled in SQL to the caps' rows (a store above them is evaluated on
        # that sample too: the holdout metrics, the registration gate and the calibration below)
        frames = TrainingFrames(conn)
        try:
            window = frames.get(cutoff, horizon, rows)
            earlier = frames.get(cutoff - timedelta(days=horizon), horizon, rows)
            # each model also trains on the window a year before the one it predicts (a seasonal store),
            # and is judged on the coming season a year ago too, trained as this asset would have been then
            season, before_season, before_that = season_frames(
                lambda end: frames.get(end, horizon, rows).frame, cutoff, horizon)
            validation = season_validation(season, before_season, before_that)
            # stretches without orders inside the two windows (C - 2H, C] (earns_its_place)
            gaps = gaps_after(conn, cutoff - timedelta(days=2 * horizon), cutoff)
            # a rhythm store's order days after C - H: the fallback as it would have been served then
            validation_calendar = order_calendar_at(conn, cutoff - timedelta(days=horizon))
        finally:
            frames.close()
    frame = window.frame
    training, season_rows = with_season(frame, season)
    features = usable_features(training, FEATURE_COLUMNS)
    try:
        model = NPDModel(**settings).fit(training, features)
    except HistoryTooShort as error:
        return _register_fallback(context, duckdb, cutoff, horizon, window.rows, str(error))
    censored = float(frame["days_to_next_purchase"].isna().mean())
    n_train = min(len(training), settings["max_training_rows"] or len(training))
    trained_p, baseline_p = {}, {}
    backtest = time_split_backtest(with_season(earlier.frame, before_season)[0], cutoff, horizon, frame, features,
                                   model, settings, trained_p)
    with duckdb.get_connection() as conn:
        pareto_start = stored_fits.served_pareto_start(conn)
    # the BTYD fallback on the same rows (btyd_baseline), from the served fit's parameters read once
    baseline, why_no_baseline = baseline_on(frame, horizon, pareto_start, baseline_p, validation_calendar)
    # whether the served p_alive may be lowered with this model's probabilities (scores/customer_clv)
    backtest.update(alive_test(frame, trained_p, baseline_p, horizon))
    # a model that loses on the latest window may still know the coming season better (earns_its_place)
    backtest.update(season_check(validation, horizon, features, model, settings, pareto_start))
    candidate_metrics = {k: v for k, v in backtest.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    check = earns_its_place(candidate_metrics, baseline, why_no_baseline, backtest.get("skipped"), gaps)
    if not check["earned"]:
        return _serve_btyd_instead(context, duckdb, model, check, baseline, backtest, candidate_metrics, {
            "cutoff": str(cutoff), "training_horizon_days": horizon, "n_train": n_train, "n_rows": window.rows,
            "n_sampled": len(frame), "censored_share": censored})
    with duckdb.get_connection() as conn:
        gate = npd_registration_gate(conn, frame, candidate_metrics, horizon, (baseline, why_no_baseline))
        version = save_npd_model(
            model, {"cutoff": str(cutoff), "training_horizon_days": horizon,
                    "n_train": n_train, "n_rows": window.rows, "n_sampled": len(frame), "censored_share": censored,
                    "season_rows": season_rows,
                    "max_selection_rows": settings["max_selection_rows"],
                    "max_training_rows": settings["max_training_rows"], "scale_search": settings["scale_search"],
                    "registration": gate["reason"]},
            conn=conn, register=gate["register"], metrics=candidate_metrics,
        )
    context.log_event(registry.model_runs_event(registry.NPD_MODEL_NAME, version, gate["register"]))
    if gate["register"]:
        context.log.info(f"registered npd model {version}: {gate['reason']}")
    else:
        context.log.warning(f"npd model {version} NOT registered, scores keep the served model: {gate['reason']}")
    # In-sample calibration on the training window: mean predicted vs observed 30/90-day purchase.
    pred = model.predict(frame)
    observed = {h: float((frame["days_to_next_purchase"] <= h).mean()) for h in (30, 90)}
    selection = pd.DataFrame(model.selection_).sort_values("valid_nloglik")
    context.log.info(f"npd model {version}: {model.distribution}/{model.scale}, {censored:.0%} censored")
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "serves": "aft",
            "serving_reason": f"trained: the XGBoost survival:aft model; {check['reason']}",
            "btyd_baseline": dg.MetadataValue.json(_finite(baseline or {})),
            "cutoff": str(cutoff),
            "training_horizon_days": horizon,
            "n_train": n_train,
            "n_rows": window.rows,
            # rows the model and its holdout metrics saw: a customer sample when the store is above the caps
            "n_sampled": len(frame),
            "censored_share": censored,
            # rows of the year-ago window stacked with the latest (0: a history shorter than a year and a window)
            "season_rows": season_rows,
            "distribution": model.distribution,
            "scale": float(model.scale),
            "rounds": model.n_rounds_,
            "selection": dg.MetadataValue.md(selection.head(10).to_markdown(index=False)),
            "p30_mean_vs_observed": f"{pred['p_purchase_30d'].mean():.3f} vs {observed[30]:.3f}",
            "p90_mean_vs_observed": f"{pred['p_purchase_90d'].mean():.3f} vs {observed[90]:.3f}",
            "features": dg.MetadataValue.json(features),
            "backtest": dg.MetadataValue.json(backtest),
            "registered": gate["register"],
            "registration": gate["reason"],
            "served_version_compared": gate.get("served_version") or "",
            # AUC / Brier / MAE of the out-of-time check as floats, plotted across versions
            **float_metrics(backtest, prefix="backtest_"),
        }
    )


def _finite(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v == v}


def _serve_btyd_instead(context, duckdb: DuckDBResource, model: NPDModel, check: dict, baseline: dict | None,
                        backtest: dict, candidate_metrics: dict, meta: dict) -> dg.MaterializeResult:
    """``ml/npd_model`` when the trained model does not earn its place (``earns_its_place``): the
    trained model is kept on disk and in ``ml.model_runs``, unregistered, with the reason; the BTYD
    fallback is registered in its place, unless the served model is that fallback already."""
    with duckdb.get_connection() as conn:
        served = registry.latest_registered(conn, registry.NPD_MODEL_NAME)
        already = served is not None and load_npd_model(served["path"])[0] is None
        trained = save_npd_model(model, {**meta, "registration": check["reason"]}, conn=conn, register=False,
                                 metrics=candidate_metrics)
        registration = (f"the served {served['model_version']} is the BTYD fallback already" if already
                        else check["reason"])
        version = save_npd_fallback({**meta, "serving_reason": check["reason"], "registration": registration,
                                     "trained_version_refused": trained}, conn, register=not already,
                                    metrics=_finite(baseline or {}))
    context.log_event(registry.model_runs_event(registry.NPD_MODEL_NAME, trained, False))
    context.log_event(registry.model_runs_event(registry.NPD_MODEL_NAME, version, not already))
    context.log.warning(f"npd model {trained} NOT served: {check['reason']}")
    return dg.MaterializeResult(metadata={
        "model_version": version if not already else served["model_version"],
        "serves": "btyd",
        "serving_reason": check["reason"],
        "objective": BTYD_ONLY,
        "trained_version_refused": trained,
        "distribution": model.distribution,
        "scale": float(model.scale),
        "backtest": dg.MetadataValue.json(backtest),
        "btyd_baseline": dg.MetadataValue.json(_finite(baseline or {})),
        "baseline_comparisons": dg.MetadataValue.json(check["comparisons"]),
        "registered": not already,
        "registration": registration,
        **meta,
        **float_metrics(backtest, prefix="backtest_"),
    })


def _register_fallback(context, duckdb: DuckDBResource, cutoff, horizon: int, rows: int,
                       why: str) -> dg.MaterializeResult:
    """``ml/npd_model`` when the history is too short to train (``npd.HistoryTooShort``): the BTYD
    fallback is saved and registered when nothing is served (``registry.short_history_decision``),
    so scores/customer_npd reads its probabilities and dates off the served BTYD fit."""
    reason = f"history too short to train: {why}"
    with duckdb.get_connection() as conn:
        gate = registry.short_history_decision(conn, registry.NPD_MODEL_NAME)
        version = save_npd_fallback({"cutoff": str(cutoff), "training_horizon_days": horizon, "n_train": 0,
                                     "n_rows": rows, "serving_reason": reason, "registration": gate["reason"],
                                     "history_too_short": True},
                                    conn, register=gate["register"])
    context.log_event(registry.model_runs_event(registry.NPD_MODEL_NAME, version, gate["register"]))
    if gate["register"]:
        context.log.info(f"registered the BTYD next-purchase fallback {version}: {reason}")
    else:
        context.log.warning(f"npd fallback {version} NOT registered, scores keep the served model: {gate['reason']}")
    return dg.MaterializeResult(metadata={
        "model_version": version,
        "serves": "btyd",
        "serving_reason": reason,
        "objective": BTYD_ONLY,
        "cutoff": str(cutoff),
        "training_horizon_days": horizon,
        "n_train": 0,
        "n_rows": rows,
        "registered": gate["register"],
        "registration": gate["reason"],
        "served_version_compared": gate.get("served_version") or "",
    })


def write_npd_scores(conn, model: NPDModel | BTYDNextPurchase, cutoff, settings: dict, model_version: str,
                     scored_at, batch: int, table: str = FEATURE_TABLE, columns: list[str] | None = None,
                     calendar=None) -> dict:
    """scores.customer_npd in batches of ``batch`` customers of ``table`` (each customer's prediction
    reads only its own row): the feature table and the trained model's features by default; the
    BTYD fallback reads its inputs from ml.btyd_scores (``npd_score_assets``). ``calendar``: a rhythm
    store's order days ahead (``npd.predict_on_calendar``)."""
    ranges = customer_ranges(conn, table, batch)
    # only the model's features leave DuckDB: converting the whole feature row (36 columns, three
    # of them strings) to pandas cost more than the prediction itself
    wanted = columns if columns is not None else model.feature_cols_
    columns = ", ".join(f'"{c}"' for c in dict.fromkeys(["customer_id", *wanted]))
    constants = {"model_version": ("varchar", model_version), "scored_at": ("timestamp", scored_at),
                 "cutoff": ("date", pd.Timestamp(cutoff).date())}
    with BatchWriter(conn, "scores.customer_npd", casts={"predicted_next_purchase_date": "date"},
                     constants=constants, background=True) as writer:
        for _, frame in read_batches(conn, f"select {columns} from {table} where {{where}} order by customer_id",
                                     ranges, prefetch=True):
            writer.write(_npd_rows(model, frame, cutoff, **settings, calendar=calendar))
    return {"rows": writer.rows, "batches": len(ranges)}


def date_settings() -> dict:
    """``[npd] date_window_days`` and ``date_min_probability`` of clv.toml (the date contract)."""
    with open(clv.default_config_path(), "rb") as handle:
        raw = tomllib.load(handle).get("npd", {})
    return {"window_days": int(raw.get("date_window_days", DATE_WINDOW_DAYS)),
            "min_probability": float(raw.get("date_min_probability", DATE_MIN_PROBABILITY))}


def npd_scores(model: NPDModel | BTYDNextPurchase, frame: pd.DataFrame, cutoff, window_days: int = DATE_WINDOW_DAYS,
               min_probability: float = DATE_MIN_PROBABILITY, calendar=None) -> pd.DataFrame:
    """Rows of ``scores.customer_npd`` (without version / time): see ``next_purchase_contract``."""
    out = _npd_rows(model, frame, cutoff, window_days, min_probability, calendar)
    out["predicted_next_purchase_date"] = out["predicted_next_purchase_date"].dt.date.to_numpy()
    return out


def _npd_rows(model: NPDModel | BTYDNextPurchase, frame: pd.DataFrame, cutoff, window_days: int, min_probability: float,
              calendar=None) -> pd.DataFrame:
    """``npd_scores`` with the date still a midnight timestamp (NaT: no date): the batched writer
    casts it to a date in SQL, where a column of Python ``date`` objects cost one object per row to
    build and to scan."""
    horizons = tuple(sorted({*model.horizons, 7, 30, 90, int(window_days)}))
    scorer = copy.copy(model)  # horizons are only read-outs of the fitted curve
    scorer.horizons = horizons
    pred = predict_on_calendar(scorer, frame, pd.Timestamp(cutoff), within_days=window_days, calendar=calendar)
    served = next_purchase_contract(pred, cutoff, window_days, min_probability)
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "days_to_next_purchase": served["days_to_next_purchase"].to_numpy(),
            "predicted_next_purchase_date": pd.to_datetime(served["predicted_next_purchase_date"]).to_numpy(),
            "p_purchase_7d": served["p_purchase_7d"].to_numpy(),
            "p_purchase_30d": served["p_purchase_30d"].to_numpy(),
            "p_purchase_90d": served["p_purchase_90d"].to_numpy(),
        }
    )


NPD_ASSETS = [npd_model]
