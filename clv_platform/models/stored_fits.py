"""Fits the nightly run reuses instead of refitting: BTYD parameters, the revenue forecast's
cutoff-independent pieces and the segmentation's scaler and centroids.

A fit is made on the data up to some cutoff and does not change when one more day arrives, so the
nightly run evaluates the stored fit at its own cutoff and only the training run (or a missing,
stale or mismatched fit) refits. ``ml.stored_fits`` holds one row per component, replaced when the
component is refitted, so re-running a night leaves the table as it was.

Point-in-time rule: a fit made at a *later* cutoff than the run's is never used (it has seen the
run's future); the run refits instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from clv_platform.core.assets import side_table_spec
from clv_platform.core.sql import table_exists, transaction
from clv_platform.transforms.order_gaps import Stretches, order_stretches

TABLE = "ml.stored_fits"
# written by whichever asset refits a component (ml/btyd_scores, scores/customer_segments,
# marts/revenue_forecast); that asset logs the materialization (``save(..., context=)``)
STORED_FITS = dg.AssetKey(["ml", "stored_fits"])
STORED_FITS_SPEC = side_table_spec(STORED_FITS, "Fits the nightly run reuses: one row per component (BTYD "
                                   "parameters, segmentation centroids, revenue-forecast pieces), replaced when "
                                   "the component is refitted (models/stored_fits.py).")
BTYD = "btyd"
REVENUE_FORECAST = "revenue_forecast"
SEGMENTS = "segments"

_DDL = """
create schema if not exists ml;
create table if not exists ml.stored_fits (
    component varchar primary key,
    fit_cutoff date not null,
    fitted_at timestamp not null,
    config_key varchar not null,
    reason varchar,
    params json not null
)
"""


@dataclass(frozen=True)
class StoredFit:
    component: str
    fit_cutoff: date
    fitted_at: datetime
    config_key: str
    params: dict


@dataclass(frozen=True)
class Decision:
    """Whether a run reuses the stored fit, why, and how old (in cutoff days) the fit it serves is."""

    reuse: bool
    reason: str
    age_days: int

    def metadata(self, fit_cutoff: date) -> dict:
        return {"fit": "reused" if self.reuse else "refitted", "fit_reason": self.reason,
                "fit_cutoff": str(fit_cutoff), "fit_age_days": int(self.age_days)}


def config_key(settings: dict) -> str:
    """A short fingerprint of the settings a fit depends on: a stored fit made under other settings is refitted."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load(conn: duckdb.DuckDBPyConnection, component: str) -> StoredFit | None:
    if not table_exists(conn, TABLE):
        return None
    row = conn.execute(
        f"select component, fit_cutoff, fitted_at, config_key, params from {TABLE} where component = ?", [component]
    ).fetchone()
    if row is None:
        return None
    return StoredFit(row[0], row[1], row[2], row[3], json.loads(row[4]))


def save(conn: duckdb.DuckDBPyConnection, component: str, fit_cutoff: date, key: str, params: dict,
         reason: str = "", context=None) -> StoredFit:
    """Store (replace) the component's fit; ``params`` must be JSON-serializable. With the asset's
    ``context``, the write is logged as a materialization of ``ml/stored_fits``."""
    fitted_at = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    text = json.dumps(params, sort_keys=True, allow_nan=True, default=_json_default)
    for statement in _DDL.split(";"):
        conn.execute(statement)
    with transaction(conn):
        conn.execute(f"delete from {TABLE} where component = ?", [component])
        conn.execute(f"insert into {TABLE} values (?, ?, ?, ?, ?, ?)",
                     [component, fit_cutoff, fitted_at, key, reason, text])
    if context is not None:
        context.log_event(dg.AssetMaterialization(asset_key=STORED_FITS, metadata={
            "component": component, "fit_cutoff": str(fit_cutoff), "reason": reason}))
    return StoredFit(component, fit_cutoff, fitted_at, key, json.loads(text))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (date, datetime, pd.Timestamp)):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a fit")


def decide(stored: StoredFit | None, cutoff: date, key: str, max_age_days: int, force: str | None = None) -> Decision:
    """Reuse the stored fit unless told to refit (``force``: the reason), or it is missing, made under
    other settings, made at a later cutoff than this run's, or older than ``max_age_days``."""
    if force:
        return Decision(False, force, 0)
    if stored is None:
        return Decision(False, "no stored fit", 0)
    if stored.config_key != key:
        return Decision(False, "the settings, or the runs without orders the fit read, changed since the stored fit", 0)
    age = (cutoff - stored.fit_cutoff).days
    if age < 0:
        return Decision(False, f"the stored fit is from a later cutoff ({stored.fit_cutoff}) than this run's "
                               f"({cutoff}); reusing it would use the future", 0)
    if age > max_age_days:
        return Decision(False, f"the stored fit of {stored.fit_cutoff} is {age} days old "
                               f"(refit_after_days = {max_age_days})", 0)
    return Decision(True, f"reused the fit of {stored.fit_cutoff} ({age} days old, refit after {max_age_days})", age)


def training_run(context, training_keys) -> str | None:
    """A reason to refit when this run also trains the models (its selection holds one of
    ``training_keys``): the weekly training refreshes every stored fit.

    The run records its assets only when it is a subset of its job; a whole asset job run
    (``rebuild_and_train`` from ``clv-platform files``, ``refresh_everything``) records an empty
    selection, and its assets are those of the job."""
    try:
        selection = context.run.asset_selection
        if not selection:
            selection = context.job_def.asset_layer.selected_asset_keys
    except AttributeError:  # a direct invocation without a run
        return None
    if selection and any(key in selection for key in training_keys):
        return "this run trains the models"
    return None


# ----------------------------------------------------------------------------- BTYD parameters
def btyd_params(model) -> dict:
    """Everything ``btyd_from_params`` needs to rebuild ``model`` (a ``btyd.BTYDModel``) exactly."""
    spend = model.spend
    return {
        "model": model.model,
        "transaction_params": {k: float(v) for k, v in model.transactions.params_.items()},
        "spend_params": ({k: float(v) for k, v in spend.fitter.params_.items()} if spend.fitter is not None else None),
        "spend_n_fitted": int(spend.n_fitted),
        "spend_n_excluded_nonpositive": int(spend.n_excluded_nonpositive),
        "spend_population_mean": float(spend.population_mean),
        "log_likelihood": float(model.log_likelihood),
        "n_customers": int(model.n_customers),
        "penalizer": float(model.penalizer),
        "selection": [{k: v for k, v in row.items()} for row in model.selection],
        "reason": model.reason,
    }


def btyd_from_params(params: dict):
    """The ``btyd.BTYDModel`` whose predictions are those of the stored parameters (no fitting)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

    from clv_platform.models import btyd

    family = params["model"]
    fitter_class = {btyd.BGNBD: BetaGeoFitter, btyd.MBGNBD: ModifiedBetaGeoFitter,
                    btyd.PARETO_NBD: ParetoNBDFitter}[family]
    fitter = fitter_class(penalizer_coef=float(params["penalizer"]))
    # lifetimes' predictions read only params_ (its _unload_params); the order is the fitter's own
    fitter.params_ = pd.Series(params["transaction_params"])
    spend_fitter = None
    if params.get("spend_params"):
        spend_fitter = GammaGammaFitter()
        spend_fitter.params_ = pd.Series(params["spend_params"])
    spend = btyd.SpendFit(spend_fitter, int(params["spend_n_fitted"]), int(params["spend_n_excluded_nonpositive"]),
                          float(params["spend_population_mean"]))
    return btyd.BTYDModel(
        model=family, transactions=btyd.TransactionModel(fitter, family), spend=spend,
        log_likelihood=float(params["log_likelihood"]), n_customers=int(params["n_customers"]),
        penalizer=float(params["penalizer"]), selection=tuple(params.get("selection") or ()),
        reason=str(params.get("reason") or ""),
    )


def served_pareto_start(conn: duckdb.DuckDBPyConnection) -> dict | None:
    """The stored BTYD fit's Pareto/NBD parameters (week units), where a Pareto/NBD refit on
    similar data (a training window, a validation window) starts; None without a stored Pareto/NBD fit."""
    from clv_platform.models.btyd import pareto_params

    stored = load(conn, BTYD)
    return pareto_params(btyd_from_params(stored.params)) if stored is not None else None


def served_family(conn: duckdb.DuckDBPyConnection) -> tuple[str, float] | None:
    """(family, L2 penalizer) of the stored BTYD fit, which the CLV training's window fits take
    (``clv.windows.WindowFits``); None without a stored fit."""
    stored = load(conn, BTYD)
    if stored is None or "model" not in stored.params:
        return None
    return str(stored.params["model"]), float(stored.params.get("penalizer") or 0.0)


def btyd_config_key(config, stretches: Stretches | None = None) -> str:
    """The settings of ``clv.toml`` a BTYD fit depends on, and the runs without orders it read
    (``stretches``, seen at its cutoff): which days it took out of its customers' time and which it
    kept as the store's rhythm. A run named or gone since (a missing file added, a rhythm seen)
    means the stored parameters measure another time than tonight's features: refit."""
    cap = int(getattr(config, "max_btyd_fit_customers", 0) or 0)
    runs = {}
    if stretches is not None:
        runs = {kind: [[gap.start.isoformat(), gap.end.isoformat()] for gap in gaps]
                for kind, gaps in (("unobserved", stretches.unobserved), ("rhythm", stretches.rhythm)) if gaps}
    # the cap and the runs enter the key only when there are any, so a store's fits stored before
    # they existed stay valid
    return config_key({"model": config.btyd_model, "penalizer": config.btyd_penalizer,
                       "spend_penalizer": config.spend_penalizer, **({"max_fit_customers": cap} if cap else {}),
                       **runs})


def btyd_key_at(conn: duckdb.DuckDBPyConnection, config, fit_cutoff: date) -> str:
    """``btyd_config_key`` of a BTYD fit made at ``fit_cutoff`` on this database's orders."""
    return btyd_config_key(config, order_stretches(conn, until=fit_cutoff))
