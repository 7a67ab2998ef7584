"""Machine-learned CLV: XGBoost on point-in-time features, with BTYD outputs as features ("hybrid").

Training data are time-split windows built by the platform's own feature SQL
(``transforms.features.build_training_frame``): for a window ending at E with label length h,
features are computed at F = E - h from orders on or before F, and the label is the net spend in
(F, E]. Several windows ending at C, C - step, ... are stacked (``[windows]`` in ``clv.toml``);
no window ends after the cutoff C, so nothing later than C reaches the model.

BTYD features (p_alive, expected purchases and spend over h, expected order value, discounted
BTYD CLV) are computed per window by fitting BG/NBD (or Pareto/NBD) + Gamma-Gamma on the
features *at that window's F* - a model fitted at C would know the labels of the earlier windows.

For log-link objectives (Tweedie, log1p target) the hybrid boosts *from* the BTYD: the window's
BTYD expected spend is the booster's base margin (``[hybrid] btyd_offset``), so the trees learn a
multiplicative correction of the BTYD forecast, and early stopping at zero rounds gives back the
BTYD itself. Predictions for a horizon H longer than the label window h then apply that
correction to the BTYD forecast over H. Without an offset the h-window prediction is scaled by
the customer's BTYD ratio E[X(H)] / E[X(h)] (hybrid; decay-aware) or linearly by H / h (the
xgboost variant, which must not use BTYD). When H = h all of these are the identity.

The objective for the zero-inflated spend target is chosen by backtest, not assumed: every
candidate of ``[[objectives]]`` is trained on windows ending at or before C - h, early-stopped and
scored on the inner validation window ending at C (features at C - h), and the winner on the
configured metric is retrained on the final windows with the early-stopped number of rounds.
The log1p candidate predicts exp(f) * s - 1 with Duan's smearing factor s estimated on the
validation window (out of sample; in-sample residuals of boosted trees are too small).
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb

from clv_platform.models import btyd, metrics
from clv_platform.models.frames import usable_features
from clv_platform.transforms.features import FEATURE_COLUMNS, build_scoring_frame, build_training_frame

HYBRID = "hybrid"
XGBOOST = "xgboost"
VARIANTS = (XGBOOST, HYBRID)

BTYD_FEATURES = [
    "btyd_p_alive",
    "btyd_expected_purchases",
    "btyd_expected_aov",
    "btyd_expected_spend",
    "btyd_clv",
]
"""BTYD outputs used as hybrid features, each over the label window h (training and scoring alike)."""

DERIVED_FEATURES = ["spend_rate_per_week"]
"""Ratios computed here from the feature table: net spend per week since the first purchase (age
floored at one week) - the naive spend-rate rule, which ranks customers well and which trees
cannot build from spend and age alone (a ratio needs many splits)."""


def add_derived_features(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``DERIVED_FEATURES`` added (from ``total_net_spend`` and ``T_days``)."""
    if not {"total_net_spend", "T_days"} <= set(frame.columns):
        return frame
    weeks = (frame["T_days"].astype(float) / btyd.DAYS_PER_WEEK).clip(lower=1.0)
    return frame.assign(spend_rate_per_week=frame["total_net_spend"].astype(float) / weeks)


# Bands of the CLV ranking named for the ranks they hold (a "Top 5%" label on ranks 1-5 % would
# read as cumulative): (label, upper share of n). Stated in data_contract.toml and the README.
TIERS = (("Top 1%", 0.01), ("1-5%", 0.05), ("5-10%", 0.10), ("10-25%", 0.25))
REST = "Rest"


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ClvConfig:
    """Settings of ``clv.toml`` (see there for what each one means)."""

    horizon_days: int = 365
    label_horizon_days: int = 180
    annual_discount_rate: float = 0.10
    btyd_model: str = btyd.AUTO
    btyd_penalizer: float = 0.0
    spend_penalizer: float = 0.0
    window_count: int = 3
    window_step_days: int = 30
    xgboost: dict = field(default_factory=dict)
    objectives: tuple = ()
    hybrid_offset: bool = True
    level_calibration: bool = True
    extension_calibration: bool = True
    selection_metric: str = "normalized_gini"
    selection_tolerance: float = 0.0
    shap_sample: int = 2000
    interaction_sample: int = 400
    top_interactions: int = 20
    backtest: dict = field(default_factory=dict)
    max_selection_rows: int = 0
    max_training_rows: int = 0

    def for_backtest(self, horizon_days: int) -> "ClvConfig":
        """The config a dataset backtest uses: its holdout as horizon, ``[backtest]`` windows."""
        values = asdict(self)
        values.update(
            horizon_days=int(horizon_days),
            label_horizon_days=int(min(self.backtest.get("label_horizon_days", self.label_horizon_days), horizon_days)),
            window_count=int(self.backtest.get("window_count", self.window_count)),
            window_step_days=int(self.backtest.get("window_step_days", self.window_step_days)),
            objectives=tuple(self.objectives),
        )
        return ClvConfig(**values)


def default_config_path() -> Path:
    return Path(str(resources.files("clv_platform.models").joinpath("clv.toml")))


def load_config(path: str | Path | None = None) -> ClvConfig:
    """Read ``clv.toml`` (default: the one shipped beside this module)."""
    with open(path or default_config_path(), "rb") as handle:
        raw = tomllib.load(handle)
    horizon, model, windows = raw.get("horizon", {}), raw.get("btyd", {}), raw.get("windows", {})
    selection, explain = raw.get("selection", {}), raw.get("explain", {})
    sampling = raw.get("sampling", {})
    return ClvConfig(
        horizon_days=int(horizon.get("horizon_days", 365)),
        label_horizon_days=int(horizon.get("label_horizon_days", horizon.get("horizon_days", 365))),
        annual_discount_rate=float(horizon.get("annual_discount_rate", 0.10)),
        btyd_model=str(model.get("model", btyd.AUTO)),
        btyd_penalizer=float(model.get("penalizer", 0.0)),
        spend_penalizer=float(model.get("spend_penalizer", 0.0)),
        window_count=int(windows.get("count", 3)),
        window_step_days=int(windows.get("step_days", 30)),
        xgboost=dict(raw.get("xgboost", {})),
        objectives=tuple(dict(o) for o in raw.get("objectives", ())),
        hybrid_offset=bool(raw.get("hybrid", {}).get("btyd_offset", True)),
        level_calibration=bool(raw.get("hybrid", {}).get("level_calibration", True)),
        extension_calibration=bool(raw.get("hybrid", {}).get("extension_calibration", True)),
        selection_metric=str(selection.get("metric", "normalized_gini")),
        selection_tolerance=float(selection.get("tolerance", 0.0)),
        shap_sample=int(explain.get("shap_sample", 2000)),
        interaction_sample=int(explain.get("interaction_sample", 400)),
        top_interactions=int(explain.get("top_interactions", 20)),
        backtest=dict(raw.get("backtest", {})),
        max_selection_rows=int(sampling.get("max_selection_rows", 0)),
        max_training_rows=int(sampling.get("max_training_rows", 0)),
    )


@dataclass(frozen=True)
class ObjectiveSpec:
    """One candidate objective: XGBoost parameters plus how the target is transformed."""

    name: str
    params: dict
    target: str = "identity"  # or "log1p"

    @property
    def log_link(self) -> bool:
        """Whether the booster's margin is a log of spend (Tweedie; log1p target, approximately)."""
        return self.params["objective"] == "reg:tweedie" or self.target == "log1p"

    def eval_metric(self) -> str:
        objective = self.params["objective"]
        if objective == "reg:tweedie":
            return f"tweedie-nloglik@{self.params['tweedie_variance_power']}"
        return {"reg:absoluteerror": "mae", "reg:pseudohubererror": "mphe"}.get(objective, "rmse")


def objective_candidates(config: ClvConfig) -> list[ObjectiveSpec]:
    """Expand ``[[objectives]]`` into specs (one per Tweedie variance power)."""
    specs = []
    for entry in config.objectives:
        objective = entry["objective"]
        if objective == "reg:tweedie":
            for power in entry.get("variance_powers", [1.5]):
                specs.append(ObjectiveSpec(f"{entry['name']}_{power:g}",
                                           {"objective": objective, "tweedie_variance_power": float(power)}))
            continue
        params = {"objective": objective}
        if "huber_slope" in entry:
            params["huber_slope"] = float(entry["huber_slope"])
        specs.append(ObjectiveSpec(entry["name"], params, entry.get("target", "identity")))
    if not specs:
        raise ValueError("clv.toml defines no [[objectives]]")
    return specs


# ----------------------------------------------------------------------------- BTYD features
def btyd_summary(features: pd.DataFrame) -> pd.DataFrame:
    """The BTYD calibration summary (weeks, not rounded) from a feature frame, by customer_id.

    Equal to ``btyd.summarize`` at the same cutoff: the feature SQL already counts purchase days.
    """
    frame = features.set_index("customer_id")
    return pd.DataFrame(
        {
            "frequency": frame["frequency"].astype(int),
            "recency": frame["recency_btyd_days"].astype(float) / btyd.DAYS_PER_WEEK,
            "T": frame["T_days"].astype(float) / btyd.DAYS_PER_WEEK,
            "monetary": frame["monetary"].astype(float),
        },
        index=frame.index,
    )


def fit_btyd_at(features: pd.DataFrame, config: ClvConfig) -> btyd.BTYDModel:
    """BTYD fitted on one feature snapshot only (so on data up to its cutoff).

    ``auto`` is ``btyd.fit_auto``: Pareto/NBD and MBG/NBD, degenerate fits discarded, the higher
    calibration log-likelihood served, penalized fallbacks after that (the choice and its reason
    are on the returned model). Every family's predictions are total (``btyd.TransactionModel``).
    """
    return btyd.fit_btyd(btyd_summary(features), config.btyd_model, config.btyd_penalizer, config.spend_penalizer)


def btyd_features(
    model: btyd.BTYDModel, features: pd.DataFrame, horizon_weeks: float, annual_discount_rate: float
) -> pd.DataFrame:
    """The ``BTYD_FEATURES`` columns over ``horizon_weeks``, aligned to ``features``' rows."""
    summary = btyd_summary(features)
    scores = model.score(summary, horizon_weeks, annual_discount_rate)
    return pd.DataFrame(
        {
            "btyd_p_alive": scores["p_alive"].to_numpy(),
            "btyd_expected_purchases": scores["expected_purchases"].to_numpy(),
            "btyd_expected_aov": scores["expected_aov"].to_numpy(),
            "btyd_expected_spend": scores["expected_spend"].to_numpy(),
            "btyd_clv": scores["clv"].to_numpy(),
        },
        index=features.index,
    )


# ----------------------------------------------------------------------------- windows
def window_ends(cutoff: date, count: int, step_days: int, offset_days: int = 0) -> list[date]:
    """Label-window ends C - offset, C - offset - step, ... (newest first)."""
    return [cutoff - timedelta(days=offset_days + k * step_days) for k in range(count)]


def customer_keys(frame: pd.DataFrame) -> np.ndarray:
    """A fixed pseudo-random 64-bit key per customer id (pandas' seeded hash, stable across runs).

    The same customer gets the same key in every window, so a cap on rows keeps whole customers:
    the customers of a capped window are (nearly) the same in every window and every run.
    """
    return pd.util.hash_pandas_object(frame["customer_id"].astype(str), index=False).to_numpy()


def cap_rows(frame: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """At most ``max_rows`` rows: those of the customers with the smallest ``customer_keys``.

    A deterministic customer sample, in the original row order; ``max_rows`` of 0 / None, or a
    frame that is not larger, returns the frame itself (stores of normal size are untouched).
    """
    if not max_rows or len(frame) <= max_rows:
        return frame
    keep = np.sort(np.argpartition(customer_keys(frame), max_rows - 1)[:max_rows])
    return frame.iloc[keep].reset_index(drop=True)


def training_windows(
    conn: duckdb.DuckDBPyConnection, ends: list[date], config: ClvConfig, max_rows_per_window: int | None = None
) -> pd.DataFrame:
    """Stacked training rows of the windows ending at ``ends`` with BTYD features per window.

    Each window's BTYD model is fitted at its own feature cutoff, on all of the window's customers;
    a window with fewer than two customers (too early in the history) is skipped. With
    ``max_rows_per_window`` a window keeps a deterministic customer sample of at most that many
    rows (``cap_rows``) after its BTYD fit.
    """
    h = config.label_horizon_days
    parts = []
    for end in ends:
        frame = add_derived_features(build_training_frame(conn, end, h))
        if len(frame) < 2 or frame["frequency"].sum() == 0:
            continue
        model = fit_btyd_at(frame, config)
        frame = cap_rows(frame, max_rows_per_window)
        extra = btyd_features(model, frame, h / btyd.DAYS_PER_WEEK, config.annual_discount_rate)
        parts.append(frame.join(extra).assign(window_end=pd.Timestamp(end)))
    if not parts:
        raise ValueError(f"no training window with customers among those ending at {ends}")
    return pd.concat(parts, ignore_index=True)


def feature_list(frame: pd.DataFrame, variant: str) -> list[str]:
    """Usable features of ``frame`` for a variant: hybrid = base + BTYD, xgboost = base only."""
    base = usable_features(frame, FEATURE_COLUMNS + DERIVED_FEATURES)
    return base + usable_features(frame, BTYD_FEATURES) if variant == HYBRID else base


def _matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame[columns].astype("float64").to_numpy()


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


# ----------------------------------------------------------------------------- the model
@dataclass
class ClvModel:
    """A trained booster plus everything needed to use it the way it was trained."""

    booster: xgb.Booster
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

    def _predict(self, frame: pd.DataFrame, offset_column: str) -> np.ndarray:
        if self.serves_btyd:
            return np.clip(np.nan_to_num(frame[offset_column].to_numpy(dtype=float)), 0.0, None)
        matrix = _dmatrix(frame, self.features, self.objective, offset_column if self.offset else None)
        raw = self.booster.predict(matrix).astype(float)
        if self.objective.target == "log1p":
            raw = np.exp(raw) * self.smearing - 1.0
        return np.clip(raw, 0.0, None) * self.level

    def predict_label_window(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected net spend over the label window h, on the original currency scale, >= 0."""
        return self._predict(frame, "btyd_expected_spend")

    def predict(self, frame: pd.DataFrame, horizon_days: int, horizon_ratio: np.ndarray | None = None) -> np.ndarray:
        """Expected net spend over ``horizon_days`` (see the module docstring on extrapolation).

        The hybrid's h-window prediction p_h is extended with the BTYD's growth from h to H,
        ``horizon_ratio`` = E[X(H)] / E[X(h)]: p_H = p_h (1 + c (ratio - 1)), with c the BTYD's
        measured error beyond h (``extension_factor``, 1 = the BTYD's shape as is; for an offset
        model with c = 1 this is its learned correction applied to the BTYD spend over H). The
        xgboost variant (no BTYD) or a call without a ratio scales by H / h.
        """
        if horizon_days == self.label_horizon_days:
            return self.predict_label_window(frame)
        if (self.variant == HYBRID or self.serves_btyd) and horizon_ratio is not None:
            # h-window prediction x the BTYD's growth from h to H, the part after h corrected by the
            # BTYD error measured there one window back (1 for the BTYD served as is)
            factor = 1.0 if self.serves_btyd else self.extension_factor
            ratio = np.asarray(horizon_ratio, dtype=float)
            return self.predict_label_window(frame) * (1.0 + factor * (ratio - 1.0))
        if self.offset or self.serves_btyd:
            return self._predict(frame, "btyd_expected_spend_horizon")
        return self.predict_label_window(frame) * horizon_days / self.label_horizon_days


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


def _smearing(booster: xgb.Booster, frame: pd.DataFrame, columns: list[str], spec: ObjectiveSpec,
              offset: bool) -> float:
    """Duan's smearing factor mean(exp(residual)) of a log1p model on ``frame``."""
    log_pred = booster.predict(_dmatrix(frame, columns, spec, "btyd_expected_spend" if offset else None))
    residual = np.log1p(frame["label_spend"].to_numpy(dtype=float)) - log_pred
    return float(np.mean(np.exp(residual)))


def _better(candidate: dict, best: dict | None, metric: str, tolerance: float) -> bool:
    if best is None:
        return True
    a, b = candidate[metric], best[metric]
    if metric == "mae":
        a, b = -a, -b
    if a > b + tolerance:
        return True
    return abs(a - b) <= tolerance and candidate["mae"] < best["mae"]


@dataclass
class Selection:
    """Outcome of the objective comparison on the inner validation window."""

    chosen: ObjectiveSpec
    comparison: list[dict]
    metric: str
    rounds: int
    smearing: float
    validation_window_end: str
    train_window_ends: list[str]
    level: float = 1.0

    def as_dict(self) -> dict:
        return {
            "level": self.level,
            "chosen": self.chosen.name,
            "chosen_params": self.chosen.params,
            "metric": self.metric,
            "rounds": self.rounds,
            "smearing": self.smearing,
            "validation_window_end": self.validation_window_end,
            "train_window_ends": self.train_window_ends,
            "comparison": self.comparison,
        }


def select_objective(
    config: ClvConfig, train: pd.DataFrame, valid: pd.DataFrame, columns: list[str], variant: str = HYBRID
) -> Selection:
    """Train every candidate on ``train``, early-stop and score it on ``valid``, keep the best.

    Each comparison row holds the candidate's validation MAE, RMSE, Spearman, normalized Gini,
    predicted and actual totals and rounds; the winner maximizes ``config.selection_metric``
    (MAE is minimized), ties within the tolerance going to the lower MAE.
    """
    y = valid["label_spend"].to_numpy(dtype=float)
    rows, best, best_state, cache = [], None, None, {}
    for spec in objective_candidates(config):
        offset = uses_offset(config, spec, variant)
        booster, rounds = train_booster(config, spec, train, columns, valid, offset=offset, cache=cache)
        smear = _smearing(booster, valid, columns, spec, offset) if spec.target == "log1p" else 1.0
        model = ClvModel(booster, columns, spec, variant, config.label_horizon_days, smear, rounds, offset)
        level = level_factor(y, model.predict_label_window(valid)) if config.level_calibration else 1.0
        model.level = level
        block = metrics.regression_metrics(y, model.predict_label_window(valid))
        row = {"objective": spec.name, "params": spec.params, "btyd_offset": offset, "rounds": rounds,
               "smearing": smear, "level": level, "actual_total": float(y.sum()), **block}
        rows.append(row)
        if _better(row, best, config.selection_metric, config.selection_tolerance):
            best, best_state = row, (spec, rounds, smear, level)
    spec, rounds, smear, level = best_state
    return Selection(
        chosen=spec,
        comparison=rows,
        metric=config.selection_metric,
        rounds=rounds,
        smearing=smear,
        validation_window_end=str(valid["window_end"].max().date()),
        train_window_ends=sorted({str(t.date()) for t in train["window_end"]}),
        level=level,
    )


LEVEL_BOUNDS = (0.25, 4.0)


def level_factor(actual: np.ndarray, predicted: np.ndarray) -> float:
    """actual / predicted total on the validation window, within ``LEVEL_BOUNDS`` (1 if nothing predicted).

    Objectives that are not mean-calibrated on zero-inflated spend (absolute error -> the median,
    pseudo-Huber -> bounded steps) rank customers well but predict totals far too low; the
    selection metric (normalized Gini) does not see the level, so a model could be served that
    forecasts a fraction of the spend. One out-of-sample factor per candidate fixes the level;
    the bounds keep a degenerate candidate from being blown up.
    """
    total = float(np.sum(predicted))
    if total <= 0:
        return 1.0
    return float(np.clip(float(np.sum(actual)) / total, *LEVEL_BOUNDS))


EXTENSION_BOUNDS = (0.5, 2.0)


def btyd_extension_factor(conn: duckdb.DuckDBPyConnection, cutoff: date, config: ClvConfig) -> dict:
    """The BTYD's error on spend *beyond* the label window, measured one window back.

    Features at C - 2h (customers known then), BTYD fitted there; its expected spend in
    (C - h, C] (= over 2h minus over h) is compared with the actual spend of the same customers
    in (C - h, C]: factor = actual / expected, within ``EXTENSION_BOUNDS``. The hybrid's forecast
    for the part of the horizon after h uses the BTYD's growth times this factor, so a store where
    the BTYD's dropout is too fast (or too slow) for older customers is extrapolated with the
    error the data showed last time. 1.0 (and why) when the history is too short.
    """
    h = config.label_horizon_days
    if not config.extension_calibration:
        return {"factor": 1.0, "reason": "disabled ([hybrid] extension_calibration = false)"}
    first = build_training_frame(conn, cutoff - timedelta(days=h), h)
    if len(first) < 2 or first["frequency"].sum() == 0:
        return {"factor": 1.0, "reason": f"no repeat customers {2 * h} days before the cutoff"}
    both = build_training_frame(conn, cutoff, 2 * h)
    model = fit_btyd_at(first, config)
    short = btyd_features(model, first, h / btyd.DAYS_PER_WEEK, config.annual_discount_rate)
    long = btyd_features(model, first, 2 * h / btyd.DAYS_PER_WEEK, config.annual_discount_rate)
    expected = float(long["btyd_expected_spend"].sum() - short["btyd_expected_spend"].sum())
    actual = float(both["label_spend"].sum() - first["label_spend"].sum())
    if expected <= 0:
        return {"factor": 1.0, "reason": "the BTYD expects no spend beyond the label window"}
    factor = float(np.clip(actual / expected, *EXTENSION_BOUNDS))
    return {"factor": factor, "actual": actual, "btyd_expected": expected, "btyd_model": model.model,
            "window": f"features at {cutoff - timedelta(days=2 * h)}, spend in ({cutoff - timedelta(days=h)}, {cutoff}]",
            "reason": f"actual / BTYD spend beyond the label window one window back = {actual / expected:.3f}"}


@dataclass
class TrainedClv:
    """A final model with its selection record and training-data description."""

    model: ClvModel
    selection: Selection
    cutoff: date
    n_train: int
    window_ends: list[str]
    validation_metrics: dict
    validation_frame: pd.DataFrame | None = field(default=None, repr=False)
    serving: dict = field(default_factory=dict)
    """Hybrid vs BTYD on the validation window: which one is served and why (``serve_or_fall_back``)."""
    """The validation window (features at C - h, labels to C) behind ``validation_metrics``: the
    registry scores the served model on the same rows (not stored)."""

    def sidecar(self, config: ClvConfig) -> dict:
        """The JSON-ready description stored next to the booster by the registry."""
        return {
            "variant": self.model.variant,
            "cutoff": self.cutoff.isoformat(),
            "horizon_days": config.horizon_days,
            "label_horizon_days": self.model.label_horizon_days,
            "window_ends": self.window_ends,
            "n_train": self.n_train,
            "features": self.model.features,
            "objective": self.model.objective.name,
            "objective_params": self.model.objective.params,
            "target": self.model.objective.target,
            "smearing": self.model.smearing,
            "btyd_offset": self.model.offset,
            "serves_btyd": self.model.serves_btyd,
            "level": self.model.level,
            "extension_factor": self.model.extension_factor,
            "serving": self.serving,
            "num_boost_round": self.model.num_boost_round,
            "selection": self.selection.as_dict(),
            "validation_metrics": self.validation_metrics,
            "config": asdict(config),
        }


def train_clv(
    conn: duckdb.DuckDBPyConnection,
    cutoff: date,
    config: ClvConfig,
    variant: str = HYBRID,
    objective: ObjectiveSpec | None = None,
) -> TrainedClv:
    """Select the objective (unless given) and train the final model on windows ending <= C.

    Selection: train windows end at C - h - k * step, validation window ends at C. Final model:
    windows end at C - k * step, trained for the early-stopped number of rounds of the chosen
    objective (re-run on the validation split when ``objective`` is given).

    Row caps (``[sampling]`` in clv.toml), the usual practice for large customer bases: each
    selection window (inner training windows and the validation window) keeps a deterministic
    customer sample of at most ``max_selection_rows`` rows, and the final model trains on at most
    ``max_training_rows`` rows (split evenly over its windows). The BTYD of every window is still
    fitted on all its customers. Stores smaller than the caps are untouched.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    h = config.label_horizon_days
    per_window = -(-config.max_training_rows // max(config.window_count, 1)) if config.max_training_rows else None
    final = training_windows(conn, window_ends(cutoff, config.window_count, config.window_step_days), config,
                             per_window)
    final = cap_rows(final, config.max_training_rows)
    inner = training_windows(conn, window_ends(cutoff, config.window_count, config.window_step_days, h), config,
                             config.max_selection_rows or None)
    valid = cap_rows(final[final["window_end"] == pd.Timestamp(cutoff)].reset_index(drop=True),
                     config.max_selection_rows)
    columns = feature_list(pd.concat([inner, valid]), variant)
    candidates = config if objective is None else _only(config, objective)
    selection = select_objective(candidates, inner, valid, columns, variant)
    chosen = next(r for r in selection.comparison if r["objective"] == selection.chosen.name)
    offset = uses_offset(config, selection.chosen, variant)
    booster, rounds = train_booster(
        config, selection.chosen, final, columns, num_boost_round=selection.rounds, offset=offset
    )
    model = ClvModel(booster, columns, selection.chosen, variant, h, selection.smearing, rounds, offset,
                     level=selection.level)
    extension = btyd_extension_factor(conn, cutoff, config) if variant == HYBRID else {"factor": 1.0}
    model.extension_factor = float(extension["factor"])
    validation_metrics = {k: chosen[k] for k in ("mae", "rmse", "spearman", "normalized_gini",
                                                 "predicted_total", "actual_total")}
    serving = serve_or_fall_back(validation_metrics, valid, variant)
    if serving["served"] == "btyd":
        model.serves_btyd = True
        validation_metrics = serving["btyd_metrics"]
    return TrainedClv(
        model=model,
        selection=selection,
        cutoff=cutoff,
        n_train=int(len(final)),
        window_ends=sorted({str(t.date()) for t in final["window_end"]}),
        validation_metrics=validation_metrics,
        validation_frame=valid,
        serving={**serving, "extension": extension},
    )


def serve_or_fall_back(candidate_metrics: dict, valid: pd.DataFrame, variant: str) -> dict:
    """Serve the hybrid only if it beats the BTYD on the validation window, else the BTYD.

    "Beats" = higher normalized Gini *and* lower MAE than the BTYD's expected spend on the same
    validation rows (the BTYD of that window is fitted at its feature cutoff, so both are out of
    sample). The xgboost variant has no BTYD to fall back on and is always served as trained.
    """
    y = valid["label_spend"].to_numpy(dtype=float)
    btyd_block = metrics.regression_metrics(y, np.nan_to_num(valid["btyd_expected_spend"].to_numpy(dtype=float)))
    btyd_metrics = {**btyd_block, "actual_total": float(y.sum())}
    if variant != HYBRID:
        return {"served": variant, "reason": "no BTYD fallback for the xgboost variant", "btyd_metrics": btyd_metrics}
    gini, mae = candidate_metrics.get("normalized_gini"), candidate_metrics.get("mae")
    b_gini, b_mae = btyd_metrics.get("normalized_gini"), btyd_metrics.get("mae")
    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    comparison = f"Gini {fmt(gini)} vs BTYD {fmt(b_gini)}, MAE {fmt(mae)} vs BTYD {fmt(b_mae)}"
    beats = None not in (gini, b_gini, mae, b_mae) and gini > b_gini and mae < b_mae
    if beats:
        return {"served": HYBRID, "reason": f"hybrid beats BTYD on the validation window ({comparison})",
                "btyd_metrics": btyd_metrics}
    return {"served": "btyd", "reason": f"hybrid does not beat BTYD on the validation window ({comparison}): "
            "serving the BTYD forecast", "btyd_metrics": btyd_metrics}


def _only(config: ClvConfig, spec: ObjectiveSpec) -> ClvConfig:
    """A config whose candidate list is the one given objective (for reuse across variants)."""
    entry = {"name": spec.name, "objective": spec.params["objective"], "target": spec.target}
    if "tweedie_variance_power" in spec.params:
        entry["variance_powers"] = [spec.params["tweedie_variance_power"]]
        entry["name"] = spec.name.rsplit("_", 1)[0]
    if "huber_slope" in spec.params:
        entry["huber_slope"] = spec.params["huber_slope"]
    values = asdict(config)
    values["objectives"] = (entry,)
    return ClvConfig(**values)


# ----------------------------------------------------------------------------- scoring
def scoring_frame(
    conn: duckdb.DuckDBPyConnection,
    cutoff: date,
    config: ClvConfig,
    model: btyd.BTYDModel | None = None,
    features: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, btyd.BTYDModel]:
    """Features at C plus BTYD features (over h) and the BTYD quantities over the horizon H.

    Adds ``btyd_horizon_ratio`` = E[X(H)] / E[X(h)] (1 where E[X(h)] = 0), ``btyd_p_alive`` and
    ``btyd_*_horizon`` columns (purchases, spend, discounted CLV over H) used for scores.
    """
    frame = build_scoring_frame(conn, cutoff) if features is None else features.reset_index(drop=True)
    frame = add_derived_features(frame)
    model = model or fit_btyd_at(frame, config)
    h_weeks = config.label_horizon_days / btyd.DAYS_PER_WEEK
    H_weeks = config.horizon_days / btyd.DAYS_PER_WEEK
    short = btyd_features(model, frame, h_weeks, config.annual_discount_rate)
    long = btyd_features(model, frame, H_weeks, config.annual_discount_rate)
    ratio = np.where(short["btyd_expected_purchases"] > 0,
                     long["btyd_expected_purchases"] / short["btyd_expected_purchases"].where(
                         short["btyd_expected_purchases"] > 0, 1.0),
                     H_weeks / h_weeks)
    out = frame.join(short).assign(
        btyd_horizon_ratio=ratio,
        btyd_expected_purchases_horizon=long["btyd_expected_purchases"],
        btyd_expected_spend_horizon=long["btyd_expected_spend"],
        btyd_clv_horizon=long["btyd_clv"],
    )
    return out, model


BTYD_SCORE_COLUMNS = {
    "btyd_p_alive": "p_alive",
    "btyd_expected_purchases_horizon": "expected_purchases",
    "btyd_expected_aov": "expected_aov",
    "btyd_expected_spend_horizon": "expected_spend",
    "btyd_clv_horizon": "clv",
    "btyd_expected_purchases": "expected_purchases_label_window",
    "btyd_expected_spend": "expected_spend_label_window",
    "btyd_clv": "clv_label_window",
    "btyd_horizon_ratio": "horizon_ratio",
}
"""``scoring_frame`` column -> ``ml.btyd_scores`` column: the table keeps both horizons so the
scores asset rebuilds the hybrid's inputs from it without refitting the BTYD."""


def btyd_scores_table(frame: pd.DataFrame, model: btyd.BTYDModel, config: ClvConfig, cutoff: date) -> pd.DataFrame:
    """Rows of ``ml.btyd_scores`` from a ``scoring_frame``: one per customer."""
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype(str).to_numpy()})
    out["cutoff"] = pd.Timestamp(cutoff).date()
    out["btyd_model"] = model.model
    out["horizon_days"] = config.horizon_days
    out["label_horizon_days"] = config.label_horizon_days
    out["frequency"] = frame["frequency"].to_numpy()
    out["recency_weeks"] = frame["recency_btyd_days"].to_numpy(dtype=float) / btyd.DAYS_PER_WEEK
    out["T_weeks"] = frame["T_days"].to_numpy(dtype=float) / btyd.DAYS_PER_WEEK
    out["monetary"] = frame["monetary"].to_numpy(dtype=float)
    for source, target in BTYD_SCORE_COLUMNS.items():
        out[target] = frame[source].to_numpy(dtype=float)
    low, high, _ = model.spend_intervals(btyd_summary(frame), config.horizon_days / btyd.DAYS_PER_WEEK)
    mean = out["expected_spend"].to_numpy(dtype=float)
    safe = np.where(mean > 0, mean, 1.0)
    # P10 / P90 of the predictive spend as multiples of its mean: scores apply them to any model's mean
    out["spend_p10_ratio"] = np.where(mean > 0, low / safe, 0.0)
    out["spend_p90_ratio"] = np.where(mean > 0, high / safe, 0.0)
    return out


INTERVAL_COLUMNS = ["spend_p10_ratio", "spend_p90_ratio"]
"""Columns of ``ml.btyd_scores``: the 10th / 90th percentile of the customer's predictive spend
over the horizon divided by its mean (BTYD draws: alive, rate, dropout, Gamma-Gamma spend)."""


def frame_from_tables(features: pd.DataFrame, btyd_scores: pd.DataFrame) -> pd.DataFrame:
    """A ``scoring_frame`` rebuilt from ``features.customer_features`` and ``ml.btyd_scores``."""
    renamed = btyd_scores.rename(columns={v: k for k, v in BTYD_SCORE_COLUMNS.items()})
    keep = ["customer_id", *BTYD_SCORE_COLUMNS, *[c for c in INTERVAL_COLUMNS if c in renamed]]
    frame = features.assign(customer_id=features["customer_id"].astype(str))
    merged = frame.merge(renamed[keep].assign(customer_id=renamed["customer_id"].astype(str)),
                         on="customer_id", how="left", validate="one_to_one")
    return add_derived_features(merged.sort_values("customer_id", kind="stable").reset_index(drop=True))


def discount_factor(frame: pd.DataFrame, config: ClvConfig) -> np.ndarray:
    """Per-customer PV factor of spend over H: BTYD's discounted / undiscounted expected spend.

    It weights the discounting by when the BTYD expects the purchases (early for a likely churner);
    for a customer with no expected spend the factor of a spend rate flat over H is used.
    """
    weeks = np.arange(1.0, config.horizon_days / btyd.DAYS_PER_WEEK + 1e-9)
    flat = float(np.mean((1.0 + config.annual_discount_rate) ** (-(weeks / btyd.WEEKS_PER_YEAR)))) if weeks.size else 1.0
    spend = frame["btyd_expected_spend_horizon"].to_numpy(dtype=float)
    clv = frame["btyd_clv_horizon"].to_numpy(dtype=float)
    return np.where(spend > 0, clv / np.where(spend > 0, spend, 1.0), flat)


def predict_scores(trained: ClvModel, frame: pd.DataFrame, config: ClvConfig) -> pd.DataFrame:
    """Per-customer predicted spend and discounted CLV over the horizon from a ``scoring_frame``."""
    spend = trained.predict(frame, config.horizon_days, frame["btyd_horizon_ratio"].to_numpy())
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "predicted_spend": spend,
            "predicted_clv": spend * discount_factor(frame, config),
            "p_alive": frame["btyd_p_alive"].to_numpy(),
            "expected_purchases": frame["btyd_expected_purchases_horizon"].to_numpy(),
            **interval_columns(spend * discount_factor(frame, config), frame),
        }
    )


def interval_columns(clv_values: np.ndarray, frame: pd.DataFrame) -> dict:
    """``predicted_clv_p10`` / ``_p90``: the model's CLV times the BTYD predictive quantile ratios
    (the BTYD's shape - zero-inflation and spread - around this model's mean); empty without them."""
    if not set(INTERVAL_COLUMNS) <= set(frame.columns):
        return {}
    return {
        "predicted_clv_p10": clv_values * frame["spend_p10_ratio"].fillna(0.0).to_numpy(dtype=float),
        "predicted_clv_p90": clv_values * frame["spend_p90_ratio"].fillna(0.0).to_numpy(dtype=float),
    }


def assign_tiers(scores: pd.DataFrame, value: str = "predicted_clv") -> pd.DataFrame:
    """Add ``clv_rank`` (1 = highest), ``clv_percentile`` and ``clv_tier``.

    Ties are broken by customer_id so the ranking is deterministic. ``clv_percentile`` =
    100 * (n - rank + 1) / n: the share of customers ranked at or below this one (100 for the
    best). The tier is the first band of ``TIERS`` whose upper share x has rank <= x * n, else
    ``Rest``; in a base smaller than 100 customers "Top 1%" is therefore empty rather than rounded up.
    """
    n = len(scores)
    order = scores.sort_values([value, "customer_id"], ascending=[False, True], kind="stable").index
    rank = pd.Series(np.arange(1, n + 1), index=order).reindex(scores.index)
    out = scores.assign(clv_rank=rank.astype("int64"), clv_percentile=100.0 * (n - rank + 1) / max(n, 1))
    tier = np.full(n, REST, dtype=object)
    for label, share in reversed(TIERS):
        tier[rank.to_numpy() <= share * n] = label
    out["clv_tier"] = tier
    return out


# ----------------------------------------------------------------------------- explainability
def _sample(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= size else frame.sample(size, random_state=seed)


def shap_importance(model: ClvModel, frame: pd.DataFrame, sample: int = 2000) -> pd.DataFrame:
    """Global importance: mean |SHAP| per feature (xgboost's TreeSHAP), on a sample for speed.

    SHAP values are on the booster's margin scale (log for Tweedie and log1p), which ranks
    features the same way as the spend scale would for a single-link model.
    """
    rows = _sample(frame, sample)
    contribs = model.booster.predict(
        _dmatrix(rows, model.features, model.objective, "btyd_expected_spend" if model.offset else None),
        pred_contribs=True,
    )[:, :-1]
    table = pd.DataFrame(
        {
            "feature": model.features,
            "mean_abs_shap": np.abs(contribs).mean(axis=0),
            "mean_shap": contribs.mean(axis=0),
        }
    ).sort_values("mean_abs_shap", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    table["n_sample"] = len(rows)
    return table.reset_index(drop=True)


def shap_interactions(model: ClvModel, frame: pd.DataFrame, sample: int = 400, top: int = 20) -> pd.DataFrame:
    """The ``top`` feature pairs by mean |SHAP interaction value| (off-diagonal, i < j, x2 for symmetry)."""
    rows = _sample(frame, sample, seed=1)
    values = model.booster.predict(
        _dmatrix(rows, model.features, model.objective, "btyd_expected_spend" if model.offset else None),
        pred_interactions=True,
    )[:, :-1, :-1]
    strength = np.abs(values).mean(axis=0)
    i, j = np.triu_indices(len(model.features), k=1)
    table = pd.DataFrame(
        {
            "feature_a": np.asarray(model.features)[i],
            "feature_b": np.asarray(model.features)[j],
            "mean_abs_interaction": 2.0 * strength[i, j],
        }
    ).sort_values("mean_abs_interaction", ascending=False, kind="stable").head(top)
    table["rank"] = np.arange(1, len(table) + 1)
    table["n_sample"] = len(rows)
    return table.reset_index(drop=True)


def importance_svg(importance: pd.DataFrame, title: str = "Mean |SHAP| per feature", top: int = 20) -> str:
    """A horizontal bar chart of the top features as a self-contained SVG string."""
    rows = importance.head(top)
    width, bar_h, left, top_pad = 760, 18, 230, 30
    height = top_pad + bar_h * len(rows) + 20
    peak = float(rows["mean_abs_shap"].max()) if len(rows) else 1.0
    peak = peak or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="10" y="18" font-size="14" font-weight="bold">{_escape(title)}</text>']
    for k, row in enumerate(rows.itertuples(index=False)):
        y = top_pad + k * bar_h
        w = (width - left - 90) * float(row.mean_abs_shap) / peak
        parts.append(f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{_escape(row.feature)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="#1f77b4"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="10">{float(row.mean_abs_shap):.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def explainability_html(importance: pd.DataFrame, interactions: pd.DataFrame, title: str) -> str:
    """A self-contained HTML page: the importance chart and the interaction table."""
    rows = "".join(
        f"<tr><td>{r.rank}</td><td>{_escape(r.feature_a)}</td><td>{_escape(r.feature_b)}</td>"
        f"<td>{r.mean_abs_interaction:.4f}</td></tr>"
        for r in interactions.itertuples(index=False)
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_escape(title)}</title>'
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>"
        f"<h1>{_escape(title)}</h1>{importance_svg(importance)}"
        "<h2>Top feature interactions (mean |SHAP interaction|)</h2>"
        f"<table><tr><th>rank</th><th>feature a</th><th>feature b</th><th>strength</th></tr>{rows}</table>"
        "</body></html>"
    )


# ----------------------------------------------------------------------------- backtest
@dataclass
class MLBacktest:
    """Holdout predictions of the ML variants and what was learned on the way."""

    predictions: dict[str, pd.Series]
    trained: dict[str, TrainedClv]
    importance: pd.DataFrame
    seconds: float = 0.0

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


def ml_backtest(conn: duckdb.DuckDBPyConnection, calibration_end, holdout_end, config: ClvConfig) -> MLBacktest:
    """Train both variants on data up to ``calibration_end`` and predict spend to ``holdout_end``.

    ``conn`` holds staging tables of the whole data set (``frames.load_staging``); only windows
    ending on or before the calibration end are read for training, and the features for the
    prediction are computed at the calibration end. The objective is selected once, for the
    hybrid, and the xgboost variant reuses it so the two differ only in the BTYD features.
    """
    started = time.perf_counter()
    cutoff = pd.Timestamp(calibration_end).date()
    horizon = (pd.Timestamp(holdout_end) - pd.Timestamp(calibration_end)).days
    config = config.for_backtest(horizon)
    frame, _ = scoring_frame(conn, cutoff, config)
    hybrid = train_clv(conn, cutoff, config, HYBRID)
    plain = train_clv(conn, cutoff, config, XGBOOST, objective=hybrid.selection.chosen)
    index = frame["customer_id"].astype(str)
    # each variant's own forecast, also when the platform would serve the BTYD instead (``serving``
    # says which): the backtest compares the models, not the serving decision
    predictions = {
        name: pd.Series(replace(trained.model, serves_btyd=False).predict(
                            frame, horizon, frame["btyd_horizon_ratio"].to_numpy()),
                        index=index.to_numpy(), name=name)
        for name, trained in ((XGBOOST, plain), (HYBRID, hybrid))
    }
    importance = shap_importance(hybrid.model, frame, config.shap_sample)
    return MLBacktest(predictions, {XGBOOST: plain, HYBRID: hybrid}, importance, time.perf_counter() - started)
