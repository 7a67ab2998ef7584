"""The XGBoost part: matrices with the BTYD offset, the trained ``ClvModel`` and how it predicts,
and training one booster (early-stopped or for a fixed number of rounds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import xgboost as xgb

from clv_platform.models.clv.config import HYBRID, ClvConfig, ObjectiveSpec
from clv_platform.models.clv.season import ClvSeason
from clv_platform.models.clv.windows import naive_btyd_ratio, naive_spend


def _matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame[columns].astype("float64").to_numpy()


def predict_rows(booster: xgb.Booster, frame: pd.DataFrame, columns: list[str], base_margin: np.ndarray | None = None,
                 output_margin: bool = False) -> np.ndarray:
    """``booster.predict(DMatrix(frame[columns]))`` without the DMatrix: ``inplace_predict`` on the
    same float64 matrix gives bit-identical values (NaN is missing in both; tested on every scoring
    booster), and building the DMatrix cost 0.6 of the 2.1 s of prediction in the 300k nightly.
    The DMatrix checked the feature names; the booster's names are checked here instead."""
    names = booster.feature_names
    if names is not None and list(names) != list(columns):
        raise ValueError(f"the booster was trained on the features {names}, not {list(columns)}")
    # row-major: pandas hands the feature block over column-major, which inplace_predict reads strided
    return booster.inplace_predict(np.ascontiguousarray(_matrix(frame, columns)),
                                   predict_type="margin" if output_margin else "value", base_margin=base_margin)


OFFSET_FLOOR = 0.01
"""Smallest BTYD spend used as a log offset (a customer the BTYD gives no chance still can buy)."""


def _offset(spec: ObjectiveSpec, btyd_spend) -> np.ndarray:
    """The BTYD prediction on the booster's margin scale: log (Tweedie) or log1p (log1p target)."""
    spend = np.nan_to_num(np.asarray(btyd_spend, dtype=float), nan=0.0)
    if spec.target == "log1p":
        return np.log1p(np.clip(spend, 0.0, None))
    return np.log(np.clip(spend, OFFSET_FLOOR, None))


def threads(config: ClvConfig) -> int:
    """XGBoost threads from ``[xgboost] nthread``; 0 (or less) = every core of the machine."""
    configured = int(config.xgboost.get("nthread", 1))
    return configured if configured > 0 else max(os.cpu_count() or 1, 1)


def _dmatrix(
    frame: pd.DataFrame, columns: list[str], spec: ObjectiveSpec, offset_column: str | None, label: bool = False,
    nthread: int = 1,
) -> xgb.DMatrix:
    """Feature matrix, optional label (transformed for the objective) and optional BTYD offset."""
    matrix = xgb.DMatrix(_matrix(frame, columns), feature_names=columns, nthread=nthread)
    if label:
        matrix.set_label(_target(spec, frame["label_spend"].to_numpy(dtype=float)))
    if offset_column is not None:
        matrix.set_base_margin(_offset(spec, frame[offset_column]))
    return matrix


@dataclass
class ClvModel:
    """A trained booster plus everything needed to use it the way it was trained.

    ``booster`` is None for a BTYD-only model (``train.btyd_only``: the history was too short to
    train one); such a model always ``serves_btyd`` and has no features."""

    booster: xgb.Booster | None
    features: list[str]
    objective: ObjectiveSpec
    variant: str
    label_horizon_days: int
    smearing: float = 1.0
    num_boost_round: int = 0
    offset: bool = False
    serves_btyd: bool = False
    """True when the booster did not beat the BTYD on the validation window: predictions are then
    the BTYD's own (``btyd_expected_spend`` over h, ``btyd_expected_spend_horizon`` over H)."""
    level: float = 1.0
    """Validation-window level factor (actual / predicted total of the chosen candidate)."""
    extension_factor: float = 1.0
    """Measured BTYD error beyond the label window (``btyd_extension_factor``), applied to the part
    of the horizon after h."""
    blend: float = 1.0
    """Weight w of the booster in w * booster + (1 - w) * BTYD (hybrid only; chosen on the
    validation window by ``objective.blend_weight``; 1 = the booster alone)."""

    naive_weight: float = 0.0
    """Weight of the naive spend-rate rule (``windows.naive_spend``, at the level ``naive_scale``) in
    the blend w * booster + naive_weight * naive + (1 - w - naive_weight) * BTYD (hybrid only; chosen
    on the validation window with w by ``objective.blend_weight``; 0 = no naive component)."""

    naive_level: float = 1.0
    """The naive component's level relative to the BTYD: actual / BTYD total on the validation
    window. The naive rule is scaled to the BTYD's label-window total over the scored population
    (``naive_population_ratio``) times this, so it carries ranking and the level follows the BTYD
    at the scored cutoff (on the validation rows: actual / naive total). A constant actual / naive
    factor from the validation window, whose customers are h younger, under-forecast the CDNOW
    holdout: the naive rule's level drifts with age (BTYD / naive total 0.275 there, 0.339 at C)."""

    naive_population_ratio: float | None = None
    """BTYD / naive label-window total over the whole scored population (``windows.naive_btyd_ratio``;
    the scores asset computes it in SQL before its batches); None = over the frame predicted, which
    must then hold the whole population (the backtest, the validation window)."""

    def naive_scale(self, frame: pd.DataFrame) -> float:
        """Factor of the naive rule in the blend: ``naive_level`` x the population's BTYD / naive ratio."""
        ratio = self.naive_population_ratio
        if ratio is None:
            ratio = naive_btyd_ratio(frame, self.label_horizon_days)
        return float(self.naive_level * (ratio or 0.0))

    sharpen: float = 1.0
    """Exponent gamma of the served point forecast (``point``): the total-preserving sharpening
    of the mean chosen on the validation window (``objective.sharpen_exponent``); 1 = the mean."""

    point_rule: str = "sharpen"
    """The served point forecast's rule (``objective.point_rule``, chosen on the validation window):
    "sharpen" (c * mean ** gamma, gamma = ``sharpen``), "median" (the predictive median) or "mixture"
    (the median of the buy classifier's mixture, ``objective.mixture_median``)."""

    point_shrink: float = 1.0
    """Median and mixture rules: the median is taken of point_shrink * mean + (1 - point_shrink) * the
    BTYD's mean (``objective.shrunk_mean``, lambda chosen on the validation window); 1 = own mean."""

    classifier: xgb.Booster | None = None
    """The hybrid's buy classifier (binary:logistic, P(any spend in the label window h)) of the
    mixture point rule (``train_buy_classifier``); None when none was trained."""

    classifier_shift: float = 0.0
    """Log-odds added to the classifier's margin: its calibration in the large on the validation
    window (``calibration_shift``)."""

    classifier_season_mean: float | None = None
    """The season's mean index over the window the shift was calibrated on (the validation label
    window, ``ClvSeason.mean_over``): the season the classifier's P(buy) belongs to
    (``buy_season_ratio``); None without a season or a classifier."""

    season: ClvSeason | None = None
    """The store's season the labels were taken out of (``clv.season``); None or flat = none."""

    scoring_cutoff: date | None = None
    """The cutoff ``predict`` forecasts from, for the season to put back (set by the scorer, as
    ``naive_population_ratio`` is); None = the forecast without its season (the validation window's
    units, where the labels have none)."""

    def season_factors(self, horizon_days: int) -> tuple[float, float]:
        """(factor of the label-window part, of the part after it) of a forecast over ``horizon_days``
        from ``scoring_cutoff`` (``ClvSeason.forward``); (1, 1) without a season or a cutoff."""
        if self.season is None or self.scoring_cutoff is None:
            return 1.0, 1.0
        return self.season.forward(self.scoring_cutoff, self.label_horizon_days, horizon_days)

    def buy_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """The calibrated classifier's P(any spend over the label window) of each customer."""
        if self.classifier is None:
            raise ValueError("this model has no buy classifier (the mixture point rule needs one)")
        margin = predict_rows(self.classifier, frame, self.features, output_margin=True).astype(float)
        return 1.0 / (1.0 + np.exp(-(margin + self.classifier_shift)))

    def mixture_inputs(self, frame: pd.DataFrame, horizon_days: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(P(buy over the frame's horizon), positive-part ratios) of the mixture point rule: the
        classifier's label-window P carried to the horizon by the BTYD's log-odds
        (``objective.carry_buy_probability``) with the frame's ``p_buy_horizon`` /
        ``p_buy_label_window`` (equal on a label-window frame, where nothing is carried), then put
        into the coming season (``buy_season_ratio`` r: P -> 1 - (1 - P) ** r, the purchase
        rate scaled by r) when ``horizon_days`` and a scoring cutoff say which."""
        from clv_platform.models.clv.objective import P_BUY_HORIZON, P_BUY_LABEL, POSITIVE_COLUMNS, carry_buy_probability

        missing = [c for c in (P_BUY_HORIZON, P_BUY_LABEL, *POSITIVE_COLUMNS) if c not in frame]
        if missing:
            raise ValueError(f"the mixture point rule needs the BTYD columns {missing} (ml.btyd_scores): "
                             "rebuild ml/btyd_scores")
        positive = frame[list(POSITIVE_COLUMNS)].to_numpy(dtype=float)
        label = frame[P_BUY_LABEL].to_numpy(dtype=float)
        if np.isnan(label).any() or np.isnan(positive).any():
            raise ValueError("ml.btyd_scores was written without the mixture point rule's inputs (the model served "
                             "then used another rule, see its `mixture_inputs` metadata): materialize ml/btyd_scores "
                             "again before scoring with this model")
        p = carry_buy_probability(self.buy_probability(frame), frame[P_BUY_HORIZON].to_numpy(dtype=float), label)
        ratio = self.buy_season_ratio(horizon_days)
        if ratio != 1.0:
            p = 1.0 - np.power(np.clip(1.0 - p, 0.0, 1.0), ratio)
        return p, positive

    def buy_season_ratio(self, horizon_days: int | None) -> float:
        """The coming season's mean index over ``horizon_days`` from ``scoring_cutoff`` over the one
        the buy classifier was calibrated in (``classifier_season_mean``); 1 without either.

        Why: the mean forecast is put into its season (``predict``), but the classifier's shift is
        calibrated on the validation window's buyers, whose season it keeps. On the autumn-ramp store
        from 2011-06-09 (a validation window of December to June, index 0.84; the holdout June to
        December, 1.16) the mixture median zeroed customers who bought in the peak, and the served
        point MAE lost to the BTYD's; with the ratio it was lower on five of the eight splits served
        the mixture rule (that store's and the demo stores' rolling ends), higher by 0.1-0.7 % on the
        other three (benchmarks/MEASUREMENTS.md, session 55)."""
        if (horizon_days is None or self.scoring_cutoff is None or self.season is None or self.season.is_flat
                or not self.classifier_season_mean or self.classifier_season_mean <= 0):
            return 1.0
        return self.season.mean_over(self.scoring_cutoff, int(horizon_days)) / self.classifier_season_mean

    def point(self, mean: np.ndarray, horizon_days: int | None = None, p50_ratio: np.ndarray | None = None,
              btyd_mean: np.ndarray | None = None, frame: pd.DataFrame | None = None) -> np.ndarray:
        """The served point forecast from this model's conditional means over a whole population.

        "sharpen": c * mean ** gamma with the population's sum unchanged (``objective.sharpen``),
        gamma carried from the label window to ``horizon_days`` by ``horizon_gamma``. "median":
        mean x ``p50_ratio``, each customer's BTYD P50 / mean over the same horizon (the ratio is
        computed over the horizon itself, so nothing needs carrying; per customer, so batches
        are exact); with ``point_shrink`` < 1 the mean is first shrunk towards ``btyd_mean`` (the
        BTYD's mean of the same quantity over the same horizon), the same lambda at any horizon.
        "mixture": the mixture median (``objective.mixture_median``) of the same shrunk level with
        P(buy) and the positive-part shape from ``frame`` (``mixture_inputs``; per customer)."""
        from clv_platform.models.clv.objective import MIXTURE, apply_point_rule

        mixture = None
        if self.point_rule == MIXTURE:
            if frame is None:
                raise ValueError("the mixture point rule needs the scoring frame (classifier features, BTYD P(buy))")
            mixture = self.mixture_inputs(frame, horizon_days)
        return apply_point_rule(mean, self.point_rule, self.horizon_gamma(horizon_days), p50_ratio,
                                self.point_shrink, btyd_mean, mixture)

    def horizon_gamma(self, horizon_days: int | None = None) -> float:
        """The sharpening exponent for a forecast over ``horizon_days``: 1 + (gamma - 1) * h / H.

        gamma is chosen on a validation window of the label length h; over a longer horizon H
        each customer's spend is a sum over more purchase chances, less zero-inflated and less
        skewed, so the MAE-optimal point lies closer to the mean. The departure from the mean
        (gamma - 1) is scaled by h / H (no change for H <= h). Measured on the backtests
        (README): the exponent chosen on CDNOW's 13-week window sharpened its 39-week holdout too
        much, and the holdout's best exponent was near this scaled one.
        """
        if horizon_days is None or horizon_days <= self.label_horizon_days or self.sharpen == 1.0:
            return float(self.sharpen)
        return float(1.0 + (self.sharpen - 1.0) * self.label_horizon_days / horizon_days)

    def _predict(self, frame: pd.DataFrame, offset_column: str, days: int | None = None) -> np.ndarray:
        """The blend over the window of ``offset_column`` (``days`` long; the label window by default)."""
        btyd_spend = np.clip(np.nan_to_num(frame[offset_column].to_numpy(dtype=float)), 0.0, None)
        if self.serves_btyd:
            return btyd_spend
        if self.booster is None:
            raise ValueError("a model without a booster can only serve the BTYD (serves_btyd)")
        margin = _offset(self.objective, frame[offset_column]) if self.offset else None
        raw = predict_rows(self.booster, frame, self.features, base_margin=margin).astype(float)
        if self.objective.target == "log1p":
            raw = np.exp(raw) * self.smearing - 1.0
        booster = np.clip(raw, 0.0, None) * self.level
        if self.blend >= 1.0 and not self.naive_weight:
            return booster
        blended = self.blend * booster + (1.0 - self.blend - self.naive_weight) * btyd_spend
        if self.naive_weight:
            naive = naive_spend(frame, self.label_horizon_days if days is None else days)
            if naive is None:
                raise ValueError("the hybrid's blend has a naive spend-rate component: the frame needs "
                                 "total_net_spend and T_days (or spend_rate_per_week)")
            blended = blended + self.naive_weight * self.naive_scale(frame) * naive
        return blended

    def predict_label_window(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected net spend over the label window h, on the original currency scale, >= 0."""
        return self._predict(frame, "btyd_expected_spend")

    def predict(self, frame: pd.DataFrame, horizon_days: int, horizon_ratio: np.ndarray | None = None) -> np.ndarray:
        """Expected net spend over ``horizon_days`` (see the module docstring on extrapolation).

        The hybrid's h-window prediction p_h is extended with the BTYD's growth from h to H,
        ``horizon_ratio`` = E[X(H)] / E[X(h)]: p_H = p_h (s_h + c (ratio - 1) s_H), with c the BTYD's
        measured error beyond h (``extension_factor``, 1 = the BTYD's shape as is; for an offset
        model with c = 1 this is its learned correction applied to the BTYD spend over H) and s_h,
        s_H the coming season of the two parts (``season_factors``; 1 without a season). The
        xgboost variant (no BTYD) or a call without a ratio scales by H / h.
        """
        growth = self._growth(horizon_days, horizon_ratio)
        if growth is not None:
            return self.predict_label_window(frame) * growth
        within, after = self.season_factors(horizon_days)
        h, days = self.label_horizon_days, horizon_days
        mean_season = (within * min(h, days) + after * max(days - h, 0)) / days
        if self.offset or self.serves_btyd:
            return self._predict(frame, "btyd_expected_spend_horizon", horizon_days) * mean_season
        return self.predict_label_window(frame) * horizon_days / self.label_horizon_days * mean_season

    def label_window_part(self, spend: np.ndarray, horizon_days: int,
                          horizon_ratio: np.ndarray | None = None) -> np.ndarray | None:
        """The label-window forecast without its season behind ``spend`` = ``predict(frame,
        horizon_days, horizon_ratio)``: the served hybrid's p_h, read back from p_H = p_h (s_h + c
        (ratio - 1) s_H) without predicting again (the nightly's ``level_check`` reading, which
        would otherwise cost a second pass of the booster). None where ``predict`` is not that
        (the xgboost variant, a served BTYD, no ratio)."""
        growth = None if self.serves_btyd or self.variant != HYBRID else self._growth(horizon_days, horizon_ratio)
        if growth is None:
            return None
        spend = np.asarray(spend, dtype=float)
        growth = np.broadcast_to(np.asarray(growth, dtype=float), spend.shape)
        return np.divide(spend, growth, out=np.zeros_like(spend), where=growth > 0)

    def _growth(self, horizon_days: int, horizon_ratio: np.ndarray | None) -> np.ndarray | float | None:
        """p_H / p_h where ``predict`` extends the label-window prediction p_h: s_h over the label
        window itself, s_h + c (ratio - 1) s_H for the hybrid or a served BTYD with the BTYD's
        growth ``horizon_ratio`` (the part after h corrected by the BTYD error measured there one
        window back, c = 1 for the BTYD served as is); None where ``predict`` scales otherwise."""
        within, after = self.season_factors(horizon_days)
        if horizon_days == self.label_horizon_days:
            return within
        if (self.variant == HYBRID or self.serves_btyd) and horizon_ratio is not None:
            factor = 1.0 if self.serves_btyd else self.extension_factor
            return within + factor * (np.asarray(horizon_ratio, dtype=float) - 1.0) * after
        return None


def _train_params(config: ClvConfig, spec: ObjectiveSpec) -> dict:
    params = {k: v for k, v in config.xgboost.items() if k not in ("num_boost_round", "early_stopping_rounds")}
    params = {"eta" if k == "learning_rate" else ("lambda" if k == "reg_lambda" else k): v for k, v in params.items()}
    params.update(spec.params)
    params.update(tree_method="hist", eval_metric=spec.eval_metric(), verbosity=0, nthread=threads(config))
    return params


def uses_offset(config: ClvConfig, spec: ObjectiveSpec, variant: str) -> bool:
    """The hybrid boosts from the BTYD prediction (as a log offset) for log-link objectives."""
    return variant == HYBRID and config.hybrid_offset and spec.log_link


def _target(spec: ObjectiveSpec, y: np.ndarray) -> np.ndarray:
    return np.log1p(y) if spec.target == "log1p" else y


def train_booster(
    config: ClvConfig,
    spec: ObjectiveSpec,
    train: pd.DataFrame,
    columns: list[str],
    valid: pd.DataFrame | None = None,
    num_boost_round: int | None = None,
    offset: bool = False,
    cache: dict | None = None,
) -> tuple[xgb.Booster, int]:
    """Train one booster; with ``valid`` early-stop on it. Returns (booster, rounds used).

    Zero rounds are allowed (the booster then predicts its base margin: the BTYD offset).
    ``cache`` (a dict kept by the caller across candidates on the same frames) reuses the
    DMatrix pair of candidates with the same target transform and offset, so XGBoost's
    histogram index is built once rather than once per candidate.
    """
    offset_column = "btyd_expected_spend" if offset else None
    nthread = threads(config)
    key = (spec.target, offset_column)
    if cache is not None and key in cache:
        dtrain, dvalid = cache[key]
    else:
        dtrain = _dmatrix(train, columns, spec, offset_column, label=True, nthread=nthread)
        dvalid = None if valid is None else _dmatrix(valid, columns, spec, offset_column, label=True, nthread=nthread)
        if cache is not None:
            cache[key] = (dtrain, dvalid)
    rounds = int(config.xgboost.get("num_boost_round", 1000) if num_boost_round is None else num_boost_round)
    params = _train_params(config, spec)
    if valid is None:
        return xgb.train(params, dtrain, num_boost_round=rounds), rounds
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=int(config.xgboost.get("early_stopping_rounds", 50)),
        verbose_eval=False,
    )
    best = int(booster.best_iteration) + 1
    return booster[:best], best


def _classifier_params(config: ClvConfig) -> dict:
    """The regression boosters' tree settings ([xgboost]) with the logistic objective."""
    params = {k: v for k, v in config.xgboost.items() if k not in ("num_boost_round", "early_stopping_rounds")}
    params = {"eta" if k == "learning_rate" else ("lambda" if k == "reg_lambda" else k): v for k, v in params.items()}
    params.update(objective="binary:logistic", eval_metric="logloss", tree_method="hist", verbosity=0,
                  nthread=threads(config))
    return params


def train_buy_classifier(config: ClvConfig, train: pd.DataFrame, columns: list[str], valid: pd.DataFrame | None = None,
                         num_boost_round: int | None = None) -> tuple[xgb.Booster, int]:
    """XGBoost classifier of P(any spend in the label window) (label: ``label_spend`` > 0) on the
    regression boosters' features and tree settings; with ``valid`` early-stopped on its log loss
    (returns the early-stopped rounds), else trained for ``num_boost_round`` rounds."""
    def matrix(frame: pd.DataFrame) -> xgb.DMatrix:
        m = xgb.DMatrix(_matrix(frame, columns), feature_names=columns, nthread=threads(config))
        m.set_label((frame["label_spend"].to_numpy(dtype=float) > 0).astype(float))
        return m

    params = _classifier_params(config)
    dtrain = matrix(train)
    if valid is None:
        rounds = int(num_boost_round or 1)
        return xgb.train(params, dtrain, num_boost_round=rounds), rounds
    booster = xgb.train(params, dtrain, num_boost_round=int(config.xgboost.get("num_boost_round", 1000)),
                        evals=[(matrix(valid), "validation")],
                        early_stopping_rounds=int(config.xgboost.get("early_stopping_rounds", 50)), verbose_eval=False)
    best = int(booster.best_iteration) + 1
    return booster[:best], best


SHIFT_BOUNDS = (-3.0, 3.0)
"""Bounds of the classifier's calibration shift in log-odds."""


def calibration_shift(margin: np.ndarray, bought: np.ndarray) -> float:
    """Calibration in the large: the log-odds shift d with mean(sigmoid(margin + d)) = share of
    buyers on these rows (Platt scaling with the slope fixed at 1), by bisection within
    ``SHIFT_BOUNDS``; 0 without rows."""
    margin = np.asarray(margin, dtype=float)
    target = float(np.mean(np.asarray(bought, dtype=float) > 0)) if margin.size else 0.0
    if not margin.size:
        return 0.0
    low, high = SHIFT_BOUNDS
    for _ in range(60):
        mid = 0.5 * (low + high)
        if float(np.mean(1.0 / (1.0 + np.exp(-(margin + mid))))) < target:
            low = mid
        else:
            high = mid
    return float(0.5 * (low + high))


def _smearing(booster: xgb.Booster, frame: pd.DataFrame, columns: list[str], spec: ObjectiveSpec,
              offset: bool) -> float:
    """Duan's smearing factor mean(exp(residual)) of a log1p model on ``frame``."""
    log_pred = booster.predict(_dmatrix(frame, columns, spec, "btyd_expected_spend" if offset else None))
    residual = np.log1p(frame["label_spend"].to_numpy(dtype=float)) - log_pred
    return float(np.mean(np.exp(residual)))
