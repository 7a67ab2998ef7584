"""The ML side of the dataset backtest: train both variants at the calibration end and predict
the holdout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import duckdb
import pandas as pd

from clv_platform.models.clv.config import HYBRID, XGBOOST, ClvConfig
from clv_platform.models.clv.windows import window_ends
from clv_platform.models import btyd, total_interval
from clv_platform.models.clv.objective import SHARPEN
from clv_platform.models.clv.objective import P50_COLUMN
from clv_platform.models.clv.season import closures_at
from clv_platform.models.clv.train import TrainedClv, btyd_only, point_rule_columns, train_clv
from clv_platform.models.clv.score import scoring_frame
from clv_platform.models.clv.explain import shap_importance


HYBRID_MEAN = "hybrid_mean"
"""Backtest column: the hybrid's conditional mean (the ``hybrid`` column is its served point forecast)."""


SERVED = "served"
"""Backtest column: the point forecast the platform would serve for the store (hybrid or BTYD)."""


SERVED_MEAN = "served_mean"
"""Not a backtest column: the served model's mean (the BTYD's in the store's season when the BTYD
is served), which the ``served`` column's intervals are centred on, as scores/customer_clv's are."""


BTYD_POINT = "btyd_point"
"""Backtest column: the BTYD's own point forecast under its point rule chosen on the validation
window (``train.point_forecasts``): what the hybrid's point forecast is fairly compared with."""




@dataclass
class MLBacktest:
    """Holdout predictions of the ML variants and what was learned on the way."""

    predictions: dict[str, pd.Series]
    trained: dict[str, TrainedClv]
    importance: pd.DataFrame
    seconds: float = 0.0
    mean_columns: dict = field(default_factory=dict)
    """Point-forecast column -> the column holding its conditional mean (intervals are built
    around means, ``backtest.btyd_backtest(..., mean_columns=...)``)."""
    served_errors: dict = field(default_factory=dict)
    """Column -> (total errors of its method recorded at training, why none): the served
    store-total interval of each column (``backtest.btyd_backtest(..., served_errors=...)``)."""
    label_days: int | None = None
    served_mean_total: float | None = None
    """The served model's forecast total over the holdout: its mean (the BTYD's put into the store's
    season when the BTYD is served, the hybrid's otherwise), what the store's scores sum to."""
    means: dict = field(default_factory=dict)
    """Means that are no model column of their own (``SERVED_MEAN``), by name: the backtest frame
    holds them for ``mean_columns`` (``backtest.btyd_backtest(..., mean_series=...)``)."""

    def summary(self) -> dict:
        return {
            name: {
                "objective": t.model.objective.name,
                "rounds": t.model.num_boost_round,
                "n_train": t.n_train,
                "window_ends": t.window_ends,
                "features": len(t.model.features),
                "selection": t.selection.as_dict(),
                "serving": {k: v for k, v in t.serving.items()},
            }
            for name, t in self.trained.items()
        }


def ml_backtest(conn: duckdb.DuckDBPyConnection, calibration_end, holdout_end, config: ClvConfig,
                label_days: int | None = None, stand_in: str | None = None) -> MLBacktest:
    """Train both variants on data up to ``calibration_end`` and predict spend to ``holdout_end``.

    ``conn`` holds staging tables of the whole data set (``frames.load_staging``); only windows
    ending on or before the calibration end are read for training, and the features for the
    prediction are computed at the calibration end. The objective is selected once, for the
    hybrid, and the xgboost variant reuses it so the two differ only in the BTYD features.
    ``label_days`` caps the label window at what the history supports (``backtest_cli.check_history``).
    ``stand_in``: why production serves the BTYD stand-in at this cutoff without training (a
    closed-season store short of three cycles, ``windows.CycleTooShort``): no model is trained, and
    the hybrid and xgboost columns are that stand-in, with the store's closures.
    """
    started = time.perf_counter()
    cutoff = pd.Timestamp(calibration_end).date()
    horizon = (pd.Timestamp(holdout_end) - pd.Timestamp(calibration_end)).days
    config = config.for_backtest(horizon, label_days)
    frame, model_btyd = scoring_frame(conn, cutoff, config)
    # the windows' BTYD fits take the family served at the calibration end (``WindowFits``)
    family = (model_btyd.model, model_btyd.penalizer)
    hybrid = (btyd_only(cutoff, config, stand_in, season=closures_at(conn, cutoff)) if stand_in else
              train_clv(conn, cutoff, config, HYBRID, btyd_family=family, serving_frame=frame))
    # a label window in a closed season throughout trains no booster (``train.btyd_only``): both
    # columns are then the BTYD stand-in the platform serves, in its season (``serving`` says why)
    no_booster = hybrid.model.booster is None
    plain = hybrid if no_booster else train_clv(conn, cutoff, config, XGBOOST, objective=hybrid.selection.chosen,
                                                btyd_family=family)
    index = frame["customer_id"].astype(str).to_numpy()
    ratio = frame["btyd_horizon_ratio"].to_numpy()
    # each variant's own forecast, also when the platform would serve the BTYD instead (``serving``
    # says which): the backtest compares the models, not the serving decision
    # (forecast from the calibration end: each model's season is put back, ``ClvModel.scoring_cutoff``)
    means = {name: replace(trained.model, serves_btyd=no_booster, scoring_cutoff=cutoff).predict(frame, horizon, ratio)
             for name, trained in ((XGBOOST, plain), (HYBRID, hybrid))}
    # each customer's BTYD P50 / mean over the holdout, for the median point rule (the same draws'
    # shape the intervals use); only drawn when the rule can be chosen
    # (and the mixture median's BTYD P(buy) over the holdout and the label window and positive-part
    # shape, from the same draws: what ml.btyd_scores stores for scoring)
    if config.sharpen:
        frame = frame.assign(**point_rule_columns(model_btyd, frame, horizon / btyd.DAYS_PER_WEEK,
                                                  "btyd_expected_spend_horizon",
                                                  label_weeks=config.label_horizon_days / btyd.DAYS_PER_WEEK))
    p50 = frame[P50_COLUMN].to_numpy(dtype=float) if config.sharpen else None
    serving = hybrid.serving
    # the hybrid's point forecast under the rule chosen on the validation window (also when the
    # BTYD is served); the BTYD's own point forecast under its rule; and what the platform serves
    # (the BTYD's point is the plain BTYD's, the baseline; the hybrid's median shrinks towards the
    # BTYD in the hybrid's own season, as it was chosen on labels without one)
    # (a store closed for a season: its closures are no customer's time, so the BTYD counts the open
    # days ahead, ``ClvSeason.closures_only``)
    closures = hybrid.model.season.closures_only() if hybrid.model.season is not None else None
    btyd_mean = replace(hybrid.model, serves_btyd=True, season=closures,
                        scoring_cutoff=cutoff if closures is not None else None).predict(frame, horizon, ratio)
    btyd_in_season = replace(hybrid.model, serves_btyd=True, scoring_cutoff=cutoff).predict(frame, horizon, ratio)
    hybrid_point = replace(hybrid.model, scoring_cutoff=cutoff, sharpen=serving.get("hybrid_sharpen", 1.0),
                           point_rule=serving.get("hybrid_point_rule", SHARPEN),
                           point_shrink=serving.get("hybrid_point_shrink", 1.0)).point(means[HYBRID], horizon, p50,
                                                                                     btyd_in_season, frame)
    btyd_point = replace(hybrid.model, serves_btyd=True, sharpen=serving.get("btyd_sharpen", 1.0),
                         point_rule=serving.get("btyd_point_rule", SHARPEN),
                         point_shrink=1.0).point(btyd_mean, horizon, p50, frame=frame)
    served_model = replace(hybrid.model, scoring_cutoff=cutoff)
    served_mean = served_model.predict(frame, horizon, ratio)
    served = served_model.point(served_mean, horizon, p50, btyd_in_season, frame)
    predictions = {
        XGBOOST: pd.Series(means[XGBOOST], index=index, name=XGBOOST),
        HYBRID: pd.Series(hybrid_point, index=index, name=HYBRID),
        HYBRID_MEAN: pd.Series(means[HYBRID], index=index, name=HYBRID_MEAN),
        BTYD_POINT: pd.Series(btyd_point, index=index, name=BTYD_POINT),
        SERVED: pd.Series(served, index=index, name=SERVED),
    }
    importance = shap_importance(hybrid.model, frame, config.shap_sample)
    # the served interval is centred on the served mean: with the BTYD served on a seasonal store
    # that is the BTYD in season, not the plain BTYD column (the customers' P10/P90 of production)
    mean_columns = {HYBRID: HYBRID_MEAN, BTYD_POINT: "btyd", SERVED: SERVED_MEAN}
    return MLBacktest(predictions, {XGBOOST: plain, HYBRID: hybrid}, importance, time.perf_counter() - started,
                      mean_columns, served_errors(hybrid, plain), config.label_horizon_days, float(served_mean.sum()),
                      means={SERVED_MEAN: pd.Series(served_mean, index=index, name=SERVED_MEAN)})


def served_errors(hybrid: TrainedClv, plain: TrainedClv) -> dict:
    """Each backtest column's method errors as training recorded them (``train.total_error_record``):
    the BTYD columns the BTYD's own, the hybrid's (and the xgboost variant's, also level calibrated)
    the error of a validation-window level on the older window; ``served`` those of the served one."""
    block = hybrid.serving.get("total_error") or {}
    btyd_errors = total_interval.method_errors(block.get("btyd_log_errors") or [], level_calibrated=False)
    hybrid_errors = total_interval.method_errors(block.get("btyd_log_errors") or [], level_calibrated=True)
    windows = f"{len(btyd_errors)} of 2 label windows ending by the cutoff have a BTYD total error"
    # a window that holds a stretch without orders has none (total_error_record): say so, not "too short"
    held = total_interval.stretch_reason(block.get("windows") or [])
    btyd_entry = (btyd_errors, None if btyd_errors else held or f"too short a history: {windows}")
    hybrid_entry = (hybrid_errors, None if hybrid_errors else
                    held or f"too short a history: {windows}, the level needs two")
    plain_block = plain.serving.get("total_error") or {}
    plain_entry = (list(plain_block.get("method_log_errors") or []), plain_block.get("reason"))
    return {"btyd": btyd_entry, BTYD_POINT: btyd_entry, HYBRID: hybrid_entry, HYBRID_MEAN: hybrid_entry,
            XGBOOST: plain_entry, SERVED: btyd_entry if hybrid.model.serves_btyd else hybrid_entry}
