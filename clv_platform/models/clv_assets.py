"""ml/btyd_scores, ml/clv_model and scores/customer_clv: probabilistic and machine-learned CLV per customer.

All three work at the scoring cutoff C (``scoring_cutoff``) with the settings of ``clv.toml``:
``ml/btyd_scores`` evaluates the BTYD models at C with the stored fit (``stored_fits``; fitted on the
features at C by a training run or when the stored fit is missing or stale); ``ml/clv_model`` trains the
hybrid XGBoost model on time-split windows ending at or before C, registers it and explains it with
SHAP; ``scores/customer_clv`` scores every customer with the latest registered model. Both scoring
assets go through the customers in batches (``core.batches``, ``batch_customers``).
"""

import dataclasses
import json
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.assets import layer_asset, layer_spec
from clv_platform.core.batches import BatchWriter, customer_ranges, read_batches
from clv_platform.core.sql import table_exists
from clv_platform.models import btyd, btyd_intervals, clv, interval_cache, registry, stored_fits, total_interval as totals_
from clv_platform.models.npd import BTYD_ONLY as NPD_BTYD_ONLY
from clv_platform.models.npd_assets import NPD_MODEL_KEY
from clv_platform.models.npd_backtest import alive_window_days, order_calendar_at
from clv_platform.models.registry_view import create_model_registry_view
from clv_platform.reports import float_metrics, prune_reports, report_url
from clv_platform.resources.storage import read_sql, replace_table, reports_dir, settings_of
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE, OBSERVED_COLUMNS, btyd_days
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
CUSTOMER_NPD = dg.AssetKey(["scores", "customer_npd"])  # the table scores.customer_npd (npd_score_assets)
NPD_TABLE = "scores.customer_npd"
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


def explain_frame(conn, max_customers: int) -> pd.DataFrame:
    """The scoring frame the SHAP tables are computed on (``frame_from_tables``).

    SHAP reads a sample of ``[explain] shap_sample`` (2,000) rows of it, so a store of more than
    ``max_customers`` (``[explain] max_customers``) customers gets only a deterministic customer sample of that size from DuckDB
    (smallest DuckDB hash of the id) instead of every feature and BTYD row as pandas frames (at a
    million customers that load, merge and sort was the step's largest frame, ~1.5 GB). Smaller
    stores read every customer, as before, so their SHAP rows are unchanged.
    """
    total = int(conn.execute(f"select count(*) from {FEATURE_TABLE}").fetchone()[0])
    if not max_customers or total <= max_customers:
        return clv.frame_from_tables(_features(conn), conn.execute(f"select * from {BTYD_TABLE}").df())
    conn.execute(f"create or replace temp table _explain_customers as select customer_id from {FEATURE_TABLE} "
                 "order by hash(customer_id), customer_id limit ?", [int(max_customers)])
    try:
        picked = "customer_id in (select customer_id from _explain_customers)"
        features = conn.execute(f"select * from {FEATURE_TABLE} where {picked} order by customer_id").df()
        scores = conn.execute(f"select * from {BTYD_TABLE} where {picked}").df()
    finally:
        conn.execute("drop table if exists temp._explain_customers")
    return clv.frame_from_tables(features, scores)


def serving_sample(conn, config: clv.ClvConfig) -> pd.DataFrame | None:
    """``explain_frame`` when ml.btyd_scores holds this training's label window (its BTYD inputs
    are over the span the model trains on), else None: the level check is then skipped rather than
    made against BTYD spend over another span (ml/clv_model materialized without ml/btyd_scores)."""
    if btyd_label_windows(conn) != [int(config.label_horizon_days)]:
        return None
    return explain_frame(conn, config.explain_max_customers)


class BtydScoresConfig(dg.Config):
    """``refit``: fit the BTYD at this run's cutoff even when a fresh stored fit exists."""

    refit: bool = False


BTYD_FIT_COLUMNS = "customer_id, frequency, observed_recency_days, observed_T_days, monetary"
"""The feature columns a BTYD fit reads (the calibration summary, recency and age in observed time:
``features.OBSERVED_COLUMNS``), not the whole feature row."""
INTERVAL_CHUNK = 20_000
"""Interval keys per draw of the spend intervals (``interval_cache.DrawSettings.chunk``): the draws are
made per key of the whole store, so a customer's interval depends neither on the batch nor on who
else is scored with it."""
TRAINING_KEYS = (CLV_MODEL_KEY, NPD_MODEL_KEY)
"""A run whose selection holds one of these trains the models, and refits every stored fit."""


def trained_label_config(conn, cutoff, config: clv.ClvConfig) -> tuple[clv.ClvConfig, str, str | None]:
    """(config, note, why too short): the label window a model trained at ``cutoff`` uses, the one
    the store's history supports (``clv.supported_label_window``, at most ``[horizon]
    label_horizon_days``), the rule the backtest measures; with the reason when the history is too
    short to train (the BTYD stand-in, on the configured window)."""
    try:
        window = clv.supported_label_window(conn, cutoff, config.label_horizon_days)
    except clv.HistoryTooShort as error:
        return config, f"{config.label_horizon_days} days (configured; the history is too short to train)", str(error)
    return config.with_label_days(window.days), window.note, None


def btyd_label_config(context, conn, cutoff, config: clv.ClvConfig) -> tuple[clv.ClvConfig, str]:
    """(config, note): the label window of ml.btyd_scores' label-window columns, the BTYD inputs the
    hybrid is scored with (its offset and features over h). A run that trains the models computes
    them for the window the new model trains on (``trained_label_config``); any other run for the
    served model's window, which is what scores/customer_clv reads them for (the window grows with
    a young store's history, so tonight's rule may differ from the served model's)."""
    served = None if stored_fits.training_run(context, TRAINING_KEYS) else registry.latest_registered(conn)
    if served is not None:
        days = int(registry.read_sidecar(served["path"])["label_horizon_days"])
        return config.with_label_days(days), f"{days} days: the served model {served['model_version']}'s label window"
    config, note, _ = trained_label_config(conn, cutoff, config)
    return config, note


def btyd_label_windows(conn) -> list[int]:
    """The label windows (days) ml.btyd_scores' label-window columns are over: one after a build."""
    return [int(r[0]) for r in conn.execute(f"select distinct label_horizon_days from {BTYD_TABLE} order by 1").fetchall()]


class LabelWindowMismatch(ValueError):
    """ml.btyd_scores holds label-window columns for another window than the served model's."""


def require_label_window(conn, model, version: str) -> None:
    """Fail before scoring when ml.btyd_scores' label window is not the served model's: the hybrid
    would read BTYD inputs over another span than it was trained on (a rollback, or ml/clv_model
    materialized without ml/btyd_scores in its run)."""
    windows = btyd_label_windows(conn)
    if windows and windows != [int(model.label_horizon_days)]:
        raise LabelWindowMismatch(
            f"{BTYD_TABLE} holds label-window columns over {', '.join(map(str, windows))} days, the served CLV model "
            f"{version} was trained on {model.label_horizon_days}-day labels: materialize ml/btyd_scores (outside a "
            "training run it computes them for the served model's window), then scores/customer_clv")


def stored_or_fitted_btyd(context, conn, cutoff, config: clv.ClvConfig, max_age_days: int,
                          refit: bool = False) -> tuple:
    """(BTYD model, ``stored_fits.Decision``, fit cutoff): the stored fit when it may be reused at
    ``cutoff``, else a fit on every customer's features at ``cutoff`` (stored for the next nights)."""
    stored = stored_fits.load(conn, stored_fits.BTYD)
    # the stored fit's key as of its own cutoff (the runs without orders it read), tonight's as of this one
    fit_at = stored.fit_cutoff if stored is not None and stored.fit_cutoff <= cutoff else cutoff
    key = stored_fits.btyd_key_at(conn, config, fit_at)
    force = "refit requested (BtydScoresConfig.refit)" if refit else stored_fits.training_run(context, TRAINING_KEYS)
    decision = stored_fits.decide(stored, cutoff, key, max_age_days, force)
    if decision.reuse:
        return stored_fits.btyd_from_params(stored.params), decision, stored.fit_cutoff
    if fit_at != cutoff:
        key = stored_fits.btyd_key_at(conn, config, cutoff)
    summary_frame = conn.execute(f"select {BTYD_FIT_COLUMNS} from {FEATURE_TABLE} order by customer_id").df()
    model = clv.fit_btyd_at(summary_frame, config)
    del summary_frame
    stored_fits.save(conn, stored_fits.BTYD, cutoff, key, stored_fits.btyd_params(model), decision.reason, context=context)
    return model, decision, cutoff


BTYD_KEY_COLUMNS = ["frequency", "observed_recency_days", "observed_T_days", "monetary"]
"""Every BTYD quantity of a customer is a function of these alone: customers who share them (a
store's one-time buyers of the same first-order day, many of them) are scored once."""
BTYD_READ_COLUMNS = ", ".join(["customer_id", *BTYD_KEY_COLUMNS])
"""What ``write_btyd_scores`` reads of the feature table: the whole feature row (36 columns, three of
them strings) took longer to convert to pandas than the BTYD evaluation of a batch's distinct keys."""


def _score_batch(conn, features: pd.DataFrame, model, config: clv.ClvConfig, cutoff,
                 intervals=None) -> pd.DataFrame:
    """ml.btyd_scores rows of one batch: the batch's distinct ``BTYD_KEY_COLUMNS`` rows are scored
    (interval ratios looked up in ``intervals``, the store's table) and the results given to every
    customer that shares them. Grouped over the whole batch, not 20,000 customers at a time as
    before: 0.4 s instead of 0.8 s per 200,000 customers of the 1M bench store (a key of several
    chunks is scored once; same values bit for bit, ``BTYDModel.expected_at_times``' row sums do
    not depend on how many rows are evaluated together)."""
    first, inverse = btyd.distinct_rows(features, BTYD_KEY_COLUMNS)
    distinct = features.iloc[first]
    frame, _ = clv.scoring_frame(conn, cutoff, config, model=model, features=distinct.reset_index(drop=True))
    scored = clv.btyd_scores_table(frame, model, config, cutoff, intervals=intervals)
    rows = scored.iloc[inverse].reset_index(drop=True)
    rows["customer_id"] = features["customer_id"].astype(str).to_numpy()
    return rows


def mixture_inputs_needed(context, conn, config: clv.ClvConfig) -> tuple[bool, str]:
    """Whether ml.btyd_scores must carry the mixture point rule's inputs (``clv.MIXTURE_COLUMNS``),
    and why: a run that trains the models may register a model serving that rule, otherwise only
    a served model that uses it reads them. Their draws cost 1.6 of 14 CPU s of the nightly BTYD
    evaluation at 300k customers, so a night whose served model uses another rule leaves them null."""
    served = registry.served_point_rule(conn)
    if served is not None and served[1] == clv.MIXTURE:
        return True, f"the served model {served[0]} uses the mixture point rule"
    if not config.buy_classifier:
        return False, "[hybrid] buy_classifier = false and the served model does not use the mixture rule"
    if stored_fits.training_run(context, TRAINING_KEYS):
        return True, "this run trains the models (a new model may serve the mixture rule)"
    if served is None:
        return True, "no model served yet"
    return False, f"skipped: the served model {served[0]} uses the {served[1]} point rule"


def write_btyd_scores(conn, model, config: clv.ClvConfig, cutoff, batch: int, chunk: int | None = None,
                      mixture: bool = True, fit: str | None = None) -> dict:
    """Score every customer of the feature table with ``model`` in batches of about ``batch``
    customers into ml.btyd_scores; returns the totals for the metadata.
    Without ``mixture`` the mixture point rule's label-window P(buy) and positive-part quantile
    columns are null (``mixture_inputs_needed``). With ``fit`` (``interval_cache.fit_identity`` of
    the stored fit ``model`` is) the interval table comes from that fit's interval cache, only the
    keys it lacks drawn; without it every key is drawn and nothing is kept."""
    chunk = int(chunk or INTERVAL_CHUNK)
    ranges = customer_ranges(conn, FEATURE_TABLE, batch)
    totals = {"rows": 0, "p_alive_sum": 0.0, "one_time": 0, "one_time_p_alive_sum": 0.0, "expected_spend": 0.0}
    # the interval draws, once per interval key of the whole store (btyd_intervals): a few tens of
    # thousands of keys at any store size, and the same values for any batch size
    codes = conn.execute(f"select distinct {btyd_intervals.KEY_SQL} as code from {FEATURE_TABLE}").fetchnumpy()["code"]
    draw = interval_cache.DrawSettings(config.horizon_days / btyd.DAYS_PER_WEEK,
                                       config.label_horizon_days / btyd.DAYS_PER_WEEK, chunk=chunk)
    if fit is None:
        intervals = draw.draw(model, codes, mixture)
        totals["interval_cache"] = {"interval_keys": int(intervals.codes.size), "interval_keys_reused": 0,
                                    "interval_keys_drawn": int(intervals.codes.size),
                                    "interval_cache": "not used (no stored fit given)"}
    else:
        intervals, totals["interval_cache"] = interval_cache.cached_interval_table(conn, model, codes, draw, fit,
                                                                                   cutoff, mixture)
    totals["interval_keys"] = int(intervals.codes.size)
    top = []
    with BatchWriter(conn, BTYD_TABLE, background=True) as writer:
        for _, features in read_batches(conn, f"select {BTYD_READ_COLUMNS} from {FEATURE_TABLE} where {{where}} "
                                             "order by customer_id", ranges, prefetch=True):
            table = _score_batch(conn, features, model, config, cutoff, intervals)
            writer.write(table)
            one_time = table["frequency"] == 0
            totals["rows"] += len(table)
            totals["p_alive_sum"] += float(table["p_alive"].sum())
            totals["one_time"] += int(one_time.sum())
            totals["one_time_p_alive_sum"] += float(table.loc[one_time, "p_alive"].sum())
            totals["expected_spend"] += float(table["expected_spend"].sum())
            top.append(table.nlargest(10, "clv"))
    totals["top"] = pd.concat(top).nlargest(10, "clv") if top else pd.DataFrame()
    totals["batches"] = len(ranges)
    totals["batch_customers"] = batch
    return totals


@layer_asset(BTYD_KEY, deps=[FEATURES], kinds={"python", "duckdb"})
def btyd_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource,
                config: BtydScoresConfig) -> dg.MaterializeResult:
    """BG/NBD (or Pareto/NBD, per clv.toml) + Gamma-Gamma evaluated at the scoring cutoff: p_alive,
    expected purchases, expected order value and discounted CLV over the horizon per customer.

    The parameters come from ``ml.stored_fits`` when a fit made at most ``refit_after_days`` cutoff
    days earlier exists (the nightly case); the training run, a missing or stale fit, or changed
    settings fit them again on the features at the cutoff (distinct frequency/recency/T
    combinations, weighted) and store them. Customers are scored in batches (``batch_customers``).
    The interval draws come from the fit's ``ml.btyd_interval_cache`` (``interval_cache``): a night
    draws only the interval keys this fit has not drawn yet.
    """
    clv_config = clv.load_config()
    settings = settings_of(duckdb)
    with duckdb.get_connection() as conn:
        cutoff = scoring_cutoff(conn)
        model, decision, fit_cutoff = stored_or_fitted_btyd(context, conn, cutoff, clv_config,
                                                            settings.refit_after_days, config.refit)
        clv_config, label_note = btyd_label_config(context, conn, cutoff, clv_config)
        mixture, mixture_reason = mixture_inputs_needed(context, conn, clv_config)
        fit = interval_cache.fit_identity(stored_fits.load(conn, stored_fits.BTYD))
        totals = write_btyd_scores(conn, model, clv_config, cutoff, settings.batch_customers, mixture=mixture, fit=fit)
        contract.apply_comments(conn, tables=[BTYD_TABLE, interval_cache.TABLE])
        schema = contract.column_metadata(conn, BTYD_TABLE)
    params = model.params()
    rows = totals["rows"]
    context.log.info(f"{model.model} {'reused' if decision.reuse else 'fitted'} ({decision.reason}); "
                     f"{rows} customers scored as of {cutoff}: {params['transaction_params']}; {model.reason}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "cutoff": str(cutoff),
            **decision.metadata(fit_cutoff),
            "batches": totals["batches"],
            "batch_customers": totals["batch_customers"],
            # the interval table of this fit kept in ml.btyd_interval_cache: keys read from it, keys drawn tonight
            **totals["interval_cache"],
            "mixture_inputs": mixture_reason,
            "model": model.model,
            "model_choice": model.reason or f"{model.model} set in clv.toml",
            "penalizer": float(model.penalizer),
            "candidates": _md(pd.DataFrame([{k: v for k, v in row.items() if k != "params"}
                                            for row in model.selection]) if model.selection else
                              pd.DataFrame({"family": [model.model]})),
            "horizon_days": clv_config.horizon_days,
            "label_horizon_days": clv_config.label_horizon_days,
            "label_window": label_note,
            "transaction_params": dg.MetadataValue.json(params["transaction_params"]),
            "spend_params": dg.MetadataValue.json(params["spend_params"]),
            "log_likelihood": float(model.log_likelihood),
            "spend_customers_fitted": params["spend_n_fitted"],
            "spend_excluded_nonpositive": params["spend_n_excluded_nonpositive"],
            **({"mean_p_alive": totals["p_alive_sum"] / rows} if rows else {}),
            **({"mean_p_alive_one_time_buyers": totals["one_time_p_alive_sum"] / totals["one_time"]}
               if totals["one_time"] else {}),
            "total_expected_spend": totals["expected_spend"],
            "preview": _md(totals["top"]),
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
        # the window fits take the served fit's family, and a Pareto/NBD starts at its optimum
        # (ml/btyd_scores ran first)
        # the label window the store's history supports (the backtest's rule): shorter for a young store
        config, label_note, too_short = trained_label_config(conn, cutoff, config)
        # the frame the model is scored on (a customer sample at a large store): the served hybrid's
        # level check (train.level_check) and the SHAP tables read it
        frame = None if too_short else serving_sample(conn, config)
        trained = (clv.btyd_only(cutoff, config, too_short, season=clv.closures_at(conn, cutoff)) if too_short else
                   clv.train_clv(conn, cutoff, config, clv.HYBRID, pareto_start=stored_fits.served_pareto_start(conn),
                                 btyd_family=stored_fits.served_family(conn), serving_frame=frame))
        trained.serving["label_window"] = label_note
        gate = registration_gate(conn, trained)
        record = registry.save_model(conn, trained, config, register=gate["register"])
        context.log_event(registry.model_runs_event(record.name, record.version, gate["register"]))
        explained = trained.model.booster is not None
        # a BTYD-only model (history too short to train) has no booster: empty SHAP tables, no chart
        frame = frame if explained else None
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
    plot = reports / f"clv_explainability_{record.version}.html" if explained else None
    if plot is not None:
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
    comparison = pd.DataFrame(trained.selection.comparison).drop(columns=["params"], errors="ignore")
    explainability = ({"booster_path": dg.MetadataValue.path(str(record.booster_path)),
                       "explainability_plot": dg.MetadataValue.path(str(plot)),
                       "explainability_url": dg.MetadataValue.url(report_url(plot))} if explained else
                      {"explainability": "none: a BTYD-only model has no booster to explain (empty SHAP tables, "
                                         "no chart)"})
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
            "label_horizon_days": trained.model.label_horizon_days,
            "label_window": label_note,
            "serving_reason": trained.serving.get("reason", ""),
            "level_factor": float(trained.model.level),
            "extension_factor": float(trained.model.extension_factor),
            "extension": dg.MetadataValue.json(trained.serving.get("extension") or {}),
            # the retrained hybrid's label-window total over the BTYD's at the cutoff against the
            # validated blend's (train.level_check); a drift beyond the threshold serves the BTYD
            "level_check": dg.MetadataValue.json(trained.serving.get("level_check") or {
                "reason": "not checked: " + ("the BTYD is served" if trained.serving.get("served") == "btyd"
                                             else "no scoring frame at the cutoff")}),
            # the validation window's level on the label window a year before the forecast's first
            # (train.year_back_check); beyond the BTYD's own miss there the BTYD is served
            "year_back_check": dg.MetadataValue.json(trained.serving.get("year_back_check") or {
                "reason": "not checked: the BTYD is served before it"}),
            # the store's season the labels were taken out of (clv.season), and why none
            "season": (trained.model.season.reason if trained.model.season is not None
                       else f"none: {trained.serving.get('reason', '')}"),
            "season_index_jan_dec": dg.MetadataValue.json(
                [round(v, 3) for v in (trained.model.season.index if trained.model.season is not None else [1.0] * 12)]),
            # the training windows' BTYD fits: the served fit's family, or why a window has its own
            "window_btyd": dg.MetadataValue.json(trained.serving.get("window_btyd") or {}),
            "btyd_validation_metrics": dg.MetadataValue.json(trained.serving.get("btyd_metrics") or {}),
            # the total errors behind the served store-total interval of scores/customer_clv (total_interval)
            "total_interval_errors": dg.MetadataValue.json(trained.serving.get("total_error") or {}),
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
            "blend_naive_weight": float(trained.model.naive_weight),
            "blend_naive_level": float(trained.model.naive_level),
            "blend_component_gini": dg.MetadataValue.json(trained.selection.component_gini or {}),
            "sharpen": float(trained.model.sharpen),
            "sharpen_hybrid": float(trained.serving.get("hybrid_sharpen", 1.0)),
            "sharpen_btyd": float(trained.serving.get("btyd_sharpen", 1.0)),
            "point_rule": trained.model.point_rule,
            "point_rule_hybrid": str(trained.serving.get("hybrid_point_rule", clv.SHARPEN)),
            "point_shrink": float(trained.model.point_shrink),
            "point_rule_btyd": str(trained.serving.get("btyd_point_rule", clv.SHARPEN)),
            "model_registry": dg.MetadataValue.md(registry_md),
            "n_train": trained.n_train,
            "num_boost_round": trained.model.num_boost_round,
            "window_ends": dg.MetadataValue.json(trained.window_ends),
            "features": dg.MetadataValue.json(trained.model.features),
            "top_features": _md(importance[["rank", "feature", "mean_abs_shap"]]),
            "top_interactions": _md(interactions[["rank", "feature_a", "feature_b", "mean_abs_interaction"]]),
            **explainability,
            # the newest drift report (monitoring/drift_runs) so far, and the folder of all reports
            **({"latest_drift_report_url": dg.MetadataValue.url(report_url(drift_reports[-1]))} if drift_reports else {}),
            "all_reports_url": dg.MetadataValue.url(report_url(reports)),
            "reports_pruned": len(pruned),
        }
    )
    yield dg.MaterializeResult(asset_key=FEATURE_IMPORTANCE, metadata=side[IMPORTANCE_TABLE])
    yield dg.MaterializeResult(asset_key=FEATURE_INTERACTIONS, metadata=side[INTERACTIONS_TABLE])


def scoring_join_sql(conn, features: list[str] | None = None, alive: bool = False) -> str:
    """The ``read_batches`` query of ``clv.frame_from_tables`` done in DuckDB: each feature row with
    its ml.btyd_scores columns under their scoring-frame names (null where a customer has none), in
    ``customer_id`` order, so the scoring reads one joined batch instead of two frames merged and
    sorted in pandas (add ``clv.add_derived_features`` to the result). With ``features`` (a model's)
    only those feature columns are read, with customer_id, total_net_spend and T_days: converting the
    whole feature row to pandas cost more than the booster's prediction. With ``alive`` each row also
    carries the BTYD's ``frequency``, recency and age (``features.OBSERVED_COLUMNS``) and the served P(purchase within 90 days) of scores.customer_npd
    (``npd_p_purchase``), what ``clv.reconcile_alive`` reads."""
    present = {c for (c,) in conn.execute(f"select column_name from (describe {BTYD_TABLE})").fetchall()}
    renamed = [f'b."{target}" as "{source}"' for source, target in clv.BTYD_SCORE_COLUMNS.items()]
    extra = [f'b."{c}"' for c in (*clv.INTERVAL_COLUMNS, clv.MEDIAN_COLUMN, *clv.MIXTURE_COLUMNS) if c in present]
    own = "f.*"
    if features is not None:
        # the model's features, and what the derived spend rate (naive component) is computed from
        wanted = {"customer_id", "total_net_spend", "T_days", *features,
                  *(["frequency", *OBSERVED_COLUMNS] if alive else [])}
        columns = [c for (c,) in conn.execute(f"select column_name from (describe {FEATURE_TABLE})").fetchall()]
        own = ", ".join(f'f."{c}"' for c in columns if c in wanted)
    npd_column, npd_join = "", ""
    if alive:
        npd_column = f", n.p_purchase_{clv.ALIVE_EVIDENCE_DAYS}d as npd_p_purchase"
        npd_join = f" left join {NPD_TABLE} n using (customer_id)"
    return (f"select {own}, {', '.join(renamed + extra)}{npd_column} from {FEATURE_TABLE} f "
            f"left join {BTYD_TABLE} b using (customer_id){npd_join} where {{where}} order by customer_id")


def trained_npd_scores(conn, cutoff) -> tuple[dict | None, str]:
    """(the served next-purchase model's registry row, "") when it is a trained model (not the BTYD
    fallback, whose probabilities are the BTYD's own) and scores.customer_npd holds its scores of
    this cutoff, else (None, why not): a table left from another day is not read as today's."""
    served = registry.latest_registered(conn, registry.NPD_MODEL_NAME)
    if served is None:
        return None, "no next-purchase model is registered"
    version = str(served["model_version"])
    if str(served.get("objective")) == NPD_BTYD_ONLY:
        return None, f"the served next-purchase model {version} is the BTYD fallback (the BTYD's own timing)"
    if not table_exists(conn, NPD_TABLE):
        return None, f"{NPD_TABLE} does not exist (materialize scores/customer_npd first)"
    columns = {c for (c,) in conn.execute(f"select column_name from (describe {NPD_TABLE})").fetchall()}
    held = (conn.execute(f"select distinct cutoff, model_version from {NPD_TABLE}").fetchall()
            if "cutoff" in columns else [("unknown", "unknown")])
    if held != [(cutoff, version)]:
        shown = ", ".join(f"{c} / {v}" for c, v in held[:3]) or "no rows"
        return None, (f"{NPD_TABLE} holds cutoff / version {shown}, not {cutoff} / {version} "
                      "(materialize scores/customer_npd first)")
    return served, ""


def alive_evidence(conn, cutoff) -> tuple[object | None, str]:
    """(BTYD transaction model, why) when the served p_alive is reconciled with the served
    next-purchase model (``clv.reconcile_alive``), else (None, why not).

    Only a trained next-purchase model adds evidence (the BTYD fallback's probabilities are P(alive) x
    P(purchase | alive) of the same fit, which would give back p_alive), and only one whose P(purchase
    within 90 days) beat the BTYD's beyond noise on its validation window (``npd_backtest.paired_brier``,
    recorded with its metrics): the minimum of two estimates that differ by noise is biased down. Its
    scores must be of this cutoff and this version (``trained_npd_scores``)."""
    served, why = trained_npd_scores(conn, cutoff)
    if served is None:
        return None, f"{why}: p_alive is the BTYD's"
    version = str(served["model_version"])
    metrics = served.get("metrics")
    metrics = json.loads(metrics) if isinstance(metrics, str) else dict(metrics or {})
    gain_key = f"brier_{clv.ALIVE_EVIDENCE_DAYS}d_gain_over_btyd"
    if gain_key not in metrics:
        return None, (f"the served next-purchase model {version} has no {clv.ALIVE_EVIDENCE_DAYS}-day comparison with "
                      "the BTYD (trained before it was recorded, or no BTYD on its window): p_alive is the BTYD's")
    gain, se = float(metrics[gain_key]), float(metrics.get(f"{gain_key}_se", float("nan")))
    if not metrics.get("alive_evidence"):
        return None, (f"the served next-purchase model {version} is not better than the BTYD at "
                      f"{clv.ALIVE_EVIDENCE_DAYS} days beyond noise on its validation window (Brier gain {gain:.5f}, "
                      f"SE {se:.5f}): p_alive is the BTYD's")
    stored = stored_fits.load(conn, stored_fits.BTYD)
    if stored is None:
        return None, "no stored BTYD fit: p_alive is the BTYD's"
    return (stored_fits.btyd_from_params(stored.params).transactions,
            f"reconciled with P(purchase within {clv.ALIVE_EVIDENCE_DAYS} days) of the served next-purchase "
            f"model {version} (Brier gain over the BTYD {gain:.5f}, SE {se:.5f}, on its validation window)")


def naive_population_ratio(conn, days: int) -> float | None:
    """``clv.windows.naive_btyd_ratio`` over every customer of the feature table, in SQL: the BTYD's
    label-window spend total (ml.btyd_scores) / the naive spend-rate rule's over ``days``. The
    hybrid's naive component takes its level from it, and the scores are written in batches."""
    btyd_total, naive_total = conn.execute(f"""
        select sum(greatest(coalesce(b.expected_spend_label_window, 0), 0)),
               sum(greatest(coalesce(f.total_net_spend / greatest(f.T_days / {btyd.DAYS_PER_WEEK!r}, 1.0), 0), 0))
                   * {float(days)!r} / {btyd.DAYS_PER_WEEK!r}
        from {FEATURE_TABLE} f left join {BTYD_TABLE} b using (customer_id)""").fetchone()
    if not naive_total or not btyd_total or naive_total <= 0 or btyd_total <= 0:
        return None
    return float(btyd_total) / float(naive_total)


def _reconcile_batch(scores: pd.DataFrame, frame: pd.DataFrame, alive, tally: dict, serves_btyd: bool = False,
                     window_days: float = clv.ALIVE_EVIDENCE_DAYS) -> None:
    """``scores``' p_alive and expected purchases reconciled in place (``clv.reconcile_alive``) with
    ``frame``'s served P(purchase within 90 days); ``tally`` adds up what changed, for the metadata.

    With the BTYD served (``serves_btyd``) its spend, CLV, point and interval scale the same way: the
    BTYD's expected spend is P(alive) x E[spend | alive], and a CLV left at the BTYD's p_alive would
    contradict the expected purchases beside it (a store whose customers all stop: 48 expected
    purchases, a CLV of 40,000). The hybrid's CLV is its own, learned from labels: left as it is."""
    btyd_alive = scores["p_alive"].to_numpy(dtype=float)
    served, purchases = clv.reconcile_alive_with(alive, btyd_alive, scores["expected_purchases"],
                                                 frame["npd_p_purchase"], frame["frequency"],
                                                 btyd_days(frame)[1] / btyd.DAYS_PER_WEEK, window_days)
    scores["p_alive"], scores["expected_purchases"] = served, purchases
    if serves_btyd:
        tally["btyd_clv_sum"] = tally.get("btyd_clv_sum", 0.0) + float(np.nansum(scores["predicted_clv"]))
        scale = clv.alive_scale(btyd_alive, served)
        for column in clv.SPEND_COLUMNS:
            scores[column] = scores[column].to_numpy(dtype=float) * scale
        tally["clv_sum"] = tally.get("clv_sum", 0.0) + float(np.nansum(scores["predicted_clv"]))
    lowered = served < btyd_alive
    tally["lowered"] += int(lowered.sum())
    tally["lowered_by_half"] += int((lowered & (served < btyd_alive / 2)).sum())
    tally["btyd_p_alive_sum"] += float(np.nansum(btyd_alive))
    tally["p_alive_sum"] += float(np.nansum(served))


def write_clv_scores(conn, model, config: clv.ClvConfig, model_version: str, scored_at, batch: int,
                     alive=None, alive_window_days: float = clv.ALIVE_EVIDENCE_DAYS) -> dict:
    """scores.customer_clv in batches of ``batch`` customers (features and ml.btyd_scores of the
    same id range), then rank, percentile and tier over the whole table in SQL. With ``alive`` (the
    BTYD transaction model of ``alive_evidence``) p_alive and expected purchases are reconciled with
    the served next-purchase probabilities (``clv.reconcile_alive``)."""
    if model.naive_weight and not model.serves_btyd:
        # the naive component's level comes from the whole store, not from each batch
        model = dataclasses.replace(model, naive_population_ratio=naive_population_ratio(conn, model.label_horizon_days))
    if model.season is not None and not model.season.is_flat:
        # the forecast goes into the season after the scoring cutoff (``clv.season``)
        model = dataclasses.replace(model, scoring_cutoff=scoring_cutoff(conn))
    ranges = customer_ranges(conn, FEATURE_TABLE, batch)
    constants = {"model_version": ("varchar", model_version), "scored_at": ("timestamp", scored_at)}
    reconciled = {"lowered": 0, "lowered_by_half": 0, "btyd_p_alive_sum": 0.0, "p_alive_sum": 0.0}
    level = {"label_window": 0.0, "btyd": 0.0}  # the served hybrid's label-window total and the BTYD's
    conn.execute(f"create schema if not exists {SCORES_TABLE.split('.')[0]}")
    # the batches go to a temp table the tier SQL below turns into scores.customer_clv (one write
    # of the table instead of two; -0.2 CPU s of 1.1 at 300k), all in the writer's transaction
    with BatchWriter(conn, "_clv_unranked", constants=constants, temporary=True) as writer:
        for _, frame in read_batches(conn, scoring_join_sql(conn, model.features, alive is not None), ranges,
                                     prefetch=True):
            frame = clv.add_derived_features(frame)
            scores = clv.predict_scores(model, frame, config)
            part = model.label_window_part(scores["predicted_spend"].to_numpy(), config.horizon_days,
                                           frame["btyd_horizon_ratio"].to_numpy())
            if part is not None:
                level["label_window"] += float(part.sum())
                level["btyd"] += float(np.clip(np.nan_to_num(frame["btyd_expected_spend"].to_numpy(dtype=float)),
                                               0.0, None).sum())
            if alive is not None:
                _reconcile_batch(scores, frame, alive, reconciled, serves_btyd=model.serves_btyd,
                                 window_days=alive_window_days)
            writer.write(scores)
        tiers = " ".join(f"when clv_rank <= {share!r}::double * _n then '{label}'" for label, share in clv.TIERS)
        # the point forecast's scale c keeps the sum over the whole store (not per batch): SQL, after the batches
        gamma = model.horizon_gamma(config.horizon_days)
        conn.execute(read_sql("clv_platform.models", "sql/clv_tiers.sql").format(
            tiers=tiers, rest=clv.REST, gamma=repr(float(gamma)),
            recompute="false" if model.point_rule != clv.SHARPEN else "true", source="_clv_unranked"))
        conn.execute("drop table _clv_unranked")
    within, after = model.season_factors(config.horizon_days) if model.season is not None else (1.0, 1.0)
    return {"rows": writer.rows, "batches": len(ranges), "gamma": float(gamma), "point_rule": model.point_rule,
            "alive": reconciled if alive is not None else None,
            "served_over_btyd": level["label_window"] / level["btyd"] if level["btyd"] > 0 else None,
            "season_factors": {"label_window": round(within, 4), "after_label_window": round(after, 4)}}


@layer_asset(CUSTOMER_CLV, deps=[FEATURES, BTYD_KEY, CLV_MODEL_KEY, CUSTOMER_NPD], kinds={"python", "duckdb"})
def customer_clv(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One row per customer: discounted predicted CLV over the horizon from the latest registered
    model, BTYD p_alive and expected purchases (lowered where a trained next-purchase model is served
    and says the customer buys less than an alive one would: ``alive_evidence``), rank, percentile and
    tier (Top 1% … Rest). Customers are scored in batches of ``batch_customers`` (store.toml [scale]).
    """
    config = clv.load_config()
    settings = settings_of(duckdb)
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        model, sidecar = registry.load_latest(conn)
        # a model trained on other feature names fails here with a clear message (no rows written)
        empty = clv.frame_from_tables(conn.execute(f"select * from {FEATURE_TABLE} limit 0").df(),
                                      conn.execute(f"select * from {BTYD_TABLE} limit 0").df())
        registry.require_features(registry.DEFAULT_MODEL_NAME, sidecar["model_version"], model.features, empty.columns)
        require_label_window(conn, model, sidecar["model_version"])
        cutoff = scoring_cutoff(conn)
        alive, alive_reason = alive_evidence(conn, cutoff)
        # the served next-purchase model's P(90 d) is read on a closed-season store's open days
        alive_window = (alive_window_days(order_calendar_at(conn, cutoff)) if alive is not None
                        else clv.ALIVE_EVIDENCE_DAYS)
        if alive_window != clv.ALIVE_EVIDENCE_DAYS:
            alive_reason += f" (the {alive_window:g} open days of the next {clv.ALIVE_EVIDENCE_DAYS})"
        family = _family_check(sidecar, stored_fits.served_family(conn), model.serves_btyd)
        written = write_clv_scores(conn, model, config, sidecar["model_version"], scored_at, settings.batch_customers,
                                   alive=alive, alive_window_days=alive_window)
        rows = written["rows"]
        contract.apply_comments(conn, tables=[SCORES_TABLE])
        schema = contract.column_metadata(conn, SCORES_TABLE)
        tiers = conn.execute(f"""
            select clv_tier, count(*) as customers, sum(predicted_clv) as total_clv, avg(predicted_clv) as mean_clv
            from {SCORES_TABLE} group by clv_tier""").df()
        totals = conn.execute(f"select sum(predicted_clv), avg(predicted_clv) from {SCORES_TABLE}").fetchone()
        interval = _total_interval_sql(conn, sidecar, config.horizon_days)
        point_share = _point_in_interval_sql(conn)
        preview = conn.execute(f"select * from {SCORES_TABLE} order by clv_rank limit 10").df()
    tiers = (tiers.set_index("clv_tier").reindex([label for label, _ in clv.TIERS] + [clv.REST])
             .dropna(how="all").reset_index())
    context.log.info(f"scored {rows} customers with {sidecar['model_name']} {sidecar['model_version']} "
                     f"in {written['batches']} batches; p_alive: {alive_reason}")
    warning = family.pop("warning", None)
    if warning:
        context.log.warning(warning)
    level = _level_tonight(sidecar, written["served_over_btyd"])
    if level.pop("warning", None):
        context.log.warning(level["reason"])
    reconciled = written["alive"]
    alive_metadata = {"p_alive_source": alive_reason}
    if reconciled is not None:
        alive_metadata.update({
            "p_alive_lowered": reconciled["lowered"],
            "p_alive_lowered_by_half": reconciled["lowered_by_half"],
            "mean_btyd_p_alive": round(reconciled["btyd_p_alive_sum"] / max(rows, 1), 4),
            "mean_p_alive": round(reconciled["p_alive_sum"] / max(rows, 1), 4),
        })
        if "btyd_clv_sum" in reconciled:
            # the served BTYD's CLV follows the lowered p_alive (_reconcile_batch): what it was before
            alive_metadata["btyd_clv_before_p_alive"] = round(reconciled["btyd_clv_sum"], 2)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "model_version": sidecar["model_version"],
            "batches": written["batches"],
            "total_predicted_clv": round(float(totals[0] or 0.0), 2),
            **interval,
            "mean_predicted_clv": round(float(totals[1] or 0.0), 2),
            "sharpen": float(model.sharpen),
            "sharpen_at_horizon": written["gamma"],
            "point_rule": written["point_rule"],
            # the coming season the forecast was put into (clv.season; 1 and 1 without one)
            "season_factors": dg.MetadataValue.json(written["season_factors"]),
            # the served hybrid's label-window total over the BTYD's tonight against the validated level
            "level_check": dg.MetadataValue.json(level),
            **alive_metadata,
            **family,
            **point_share,
            "tiers": dg.MetadataValue.md(
                tiers.astype({"customers": int}).to_markdown(index=False, floatfmt=",.2f")
            ),
            "validation_metrics": dg.MetadataValue.json(json.loads(json.dumps(sidecar["validation_metrics"]))),
            "preview": _md(preview),
        }
    )


def _family_check(sidecar: dict, served: tuple[str, float] | None, serves_btyd: bool) -> dict:
    """Whether the served BTYD is of the family the hybrid's training windows were fitted in
    (``clv.windows.WindowFits``): the booster's correction belongs to that family's errors. A
    training run refits both, so they differ only when the BTYD was refitted since (a stored fit
    past ``refit_after_days`` and no retrain); the scores are still written, with a warning to
    retrain. Empty for a model that serves the BTYD, or one whose windows chose their own family."""
    trained = ((sidecar.get("serving") or {}).get("window_btyd") or {}).get("family")
    if serves_btyd or not trained or served is None:
        return {}
    out = {"btyd_family_trained_against": trained, "btyd_family_served": served[0],
           "btyd_family_matches_training": trained == served[0]}
    if trained != served[0]:
        out["warning"] = (f"the hybrid {sidecar.get('model_version')} was trained against {trained} BTYD fits and "
                          f"the BTYD served now is {served[0]} (refitted since): its correction of the BTYD is "
                          "of the other family's errors; retrain (retrain_models_job)")
    return out


def _level_tonight(sidecar: dict, served_over_btyd: float | None) -> dict:
    """The training's ``level_check`` read again at tonight's cutoff: the served hybrid's label-window
    total (without its season) over the BTYD's, against the validated blend's on the validation
    window. The model was served because the two agreed at training; nights later the features and
    the BTYD (refitted after ``refit_after_days``) move, and a drift beyond the same threshold means the
    served correction of the BTYD is no longer the validated one: the scores are written, with a
    warning to retrain (``retrain_models_job``)."""
    trained = (sidecar.get("serving") or {}).get("level_check") or {}
    # the training's threshold (the bound, or the BTYD's larger miss of the validation window);
    # a model trained before it was recorded has the bound alone
    validated, threshold = trained.get("validated_over_btyd"), trained.get("threshold", trained.get("bound"))
    if served_over_btyd is None or not validated or threshold is None:
        return {"reason": "not checked: " + ("the BTYD is served" if served_over_btyd is None else
                                             "the model was trained without a level check")}
    drift, within = clv.level_drift(served_over_btyd, validated, float(threshold))
    out = {"validated_over_btyd": float(validated), "served_over_btyd": float(served_over_btyd),
           "at_training": trained.get("served_over_btyd"), "log_drift": drift, "threshold": float(threshold),
           "within_bound": within,
           "reason": (f"the served hybrid forecasts the label window at {served_over_btyd:.3f} x the BTYD tonight, "
                      f"the validated blend {validated:.3f} x ("
                      + ("no ratio" if drift is None else f"log drift {drift:+.3f}") + ", "
                      + ("within the threshold)" if within else
                         f"beyond the threshold {threshold:.3f}: its correction of the BTYD is no longer the "
                         "validated one; retrain (retrain_models_job))"))}
    if not within:
        out["warning"] = True
    return out


def _point_in_interval_sql(conn) -> dict:
    """Share of customers whose served point forecast lies within their P10-P90: the interval is
    built around the mean, and a sharpened point of a likely buyer can exceed its P90."""
    (share,) = conn.execute(f"""
        select avg(case when predicted_clv_point between predicted_clv_p10 - 1e-9 and predicted_clv_p90 + 1e-9
                        then 1.0 else 0.0 end)
        from {SCORES_TABLE} where predicted_clv_p10 is not null""").fetchone()
    return {} if share is None else {"point_within_p10_p90_share": float(share)}


def _total_interval_sql(conn, sidecar: dict | None = None, horizon_days: int | None = None) -> dict:
    """``total_interval`` of the scores table, aggregated in DuckDB (the same formula)."""
    columns = {c for (c,) in conn.execute(
        "select column_name from duckdb_columns() where schema_name = 'scores' and table_name = 'customer_clv'"
    ).fetchall()}
    if "predicted_clv_p10" not in columns:
        return {}
    total, variance, p10, p90 = conn.execute(f"""
        select sum(predicted_clv), sum(pow((predicted_clv_p90 - predicted_clv_p10) / {2.0 * totals_.Z80!r}, 2)),
               avg(predicted_clv_p10), avg(predicted_clv_p90) from {SCORES_TABLE}""").fetchone()
    return _interval_metadata(float(total or 0.0), float(variance or 0.0), float(p10), float(p90), sidecar,
                              horizon_days)


def _interval_metadata(total: float, variance: float, mean_p10: float, mean_p90: float, sidecar: dict | None,
                       horizon_days: int | None = None) -> dict:
    """The store total's served 80 % interval (``total_interval.widen`` with the model's recorded
    total errors over the scores' horizon / their label window; the sidecar's horizon without
    ``horizon_days``) and the process-only one it widens."""
    low, high = totals_.process_interval(total, variance)
    out = {"total_predicted_clv_p10_process": low, "total_predicted_clv_p90_process": high,
           "mean_predicted_clv_p10": mean_p10, "mean_predicted_clv_p90": mean_p90}
    if sidecar is None:
        return {"total_predicted_clv_p10": low, "total_predicted_clv_p90": high, **out}
    block = (sidecar.get("serving") or {}).get("total_error")
    errors, why = totals_.served_errors(block)
    ratio = float(horizon_days or sidecar.get("horizon_days") or 0) / float((block or {}).get("label_days") or 1)
    served = totals_.widen(total, low, high, errors, ratio, why)
    return {"total_predicted_clv_p10": served["p10"], "total_predicted_clv_p90": served["p90"], **out,
            "total_interval_rule": served["rule"],
            "total_interval_error_windows": served["windows"],
            **({"total_interval_rms_log_error": served["rms_log_error"]} if served["windows"] else {}),
            "total_interval_errors": dg.MetadataValue.json({k: (block or {}).get(k) for k in (
                "label_days", "windows", "btyd_log_errors", "level_calibrated", "method_log_errors",
                "served_validation_log_error", "reason")})}


def served_metrics_on(served: dict | None, trained: clv.TrainedClv) -> tuple[str | None, dict | None]:
    """(served version, its metrics on the candidate's validation rows) - (None, None) when nothing
    is registered (``served``: its ``registry.latest_registered`` row), (version, None) when the
    served model cannot be scored on those rows."""
    from clv_platform.models import metrics

    if served is None:
        return None, None
    frame = trained.validation_frame
    try:
        model, _ = registry.load_model(served["path"])
        # as the candidate's validation metrics are: MAE of the served point forecast, Gini and
        # total of its mean (a median point is not a ranking)
        mean = model.predict_label_window(frame)
        p50 = frame[clv.P50_COLUMN].to_numpy(dtype=float) if clv.P50_COLUMN in frame else None
        predicted = model.point(mean, None, p50, frame["btyd_expected_spend"].to_numpy(dtype=float), frame)
    except (KeyError, ValueError, FileNotFoundError, TypeError):
        return served["model_version"], None
    y = frame["label_spend"].to_numpy(dtype=float)
    return served["model_version"], {**metrics.regression_metrics(y, mean), "mae": metrics.mae(y, predicted)}


def total_interval(scores: pd.DataFrame, sidecar: dict | None = None) -> dict:
    """80 % interval of the store's total CLV: the process interval from the per-customer P10 / P90,
    widened by the served model's own total error (``total_interval.widen``).

    Customers are independent given the model, so the process part is close to normal (many
    customers): per-customer sd ~ (P90 - P10) / 2.563, total = sum +- 1.2816 sd of the sum
    (``*_process``). That leaves out the model being wrong for the store, which dominates the
    total; the validation windows recorded at training (sidecar ``serving.total_error``) add it.
    Without a sidecar, or without recorded errors, the process interval is served and
    ``total_interval_rule`` says so.
    """
    if "predicted_clv_p10" not in scores:
        return {}
    variance = totals_.customer_variance(scores["predicted_clv_p10"], scores["predicted_clv_p90"])
    return _interval_metadata(float(scores["predicted_clv"].sum()), variance,
                              float(scores["predicted_clv_p10"].mean()), float(scores["predicted_clv_p90"].mean()),
                              sidecar)


def registration_gate(conn, trained: clv.TrainedClv) -> dict:
    """Register the candidate only if it is not worse than the served model on the same window.

    The candidate's metrics are its out-of-sample validation metrics (the selection run trained on
    windows ending at or before C - h, scored on the window ending at C); the served model is scored
    on exactly those rows. The served model may have seen part of that window in training, which
    favours it: the gate errs on the side of keeping what is served. Scoring always uses the newest
    *registered* model, so a refused candidate never reaches customers.
    """
    from clv_platform.core.thresholds import monitoring_config

    if trained.validation_frame is None:
        # a BTYD-only model (history too short to train): no validation window to compare on
        return registry.short_history_decision(conn, registry.DEFAULT_MODEL_NAME)
    served = registry.latest_registered(conn, registry.DEFAULT_MODEL_NAME)
    served_days = None if served is None else registry.read_sidecar(served["path"]).get("label_horizon_days")
    if served_days is not None and int(served_days) != trained.model.label_horizon_days:
        # a young store's label window grows with its history (clv.supported_label_window): the
        # served model's BTYD inputs span another window than this validation frame's
        return {"register": True, "served_version": served["model_version"], "comparisons": [],
                "served_metrics": None,
                "reason": f"served {served['model_version']} was trained on {int(served_days)}-day labels, this model on "
                          f"{trained.model.label_horizon_days} (the label window the store's history supports now): "
                          "the served model cannot be scored on this validation window"}
    version, served_metrics = served_metrics_on(served, trained)
    decision = registry.decide(trained.validation_metrics, served_metrics, monitoring_config().model_regression, version)
    decision["served_metrics"] = served_metrics
    return decision


CLV_ASSETS = [btyd_scores, clv_model, customer_clv]
