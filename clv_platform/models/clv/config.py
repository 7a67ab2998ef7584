"""Settings of ``clv.toml`` (``ClvConfig``, ``load_config``), the variant names, the BTYD and derived
feature lists, and the candidate objectives (``ObjectiveSpec``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from clv_platform.models import btyd


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


@dataclass(frozen=True)
class ClvConfig:
    """Settings of ``clv.toml`` (see there for what each one means)."""

    horizon_days: int = 365
    label_horizon_days: int = 180
    annual_discount_rate: float = 0.10
    btyd_model: str = btyd.AUTO
    btyd_penalizer: float = 0.0
    spend_penalizer: float = 0.0
    window_count: int = 1
    window_step_days: int = 30
    xgboost: dict = field(default_factory=dict)
    objectives: tuple = ()
    hybrid_offset: bool = True
    level_calibration: bool = True
    extension_calibration: bool = True
    seasonality_min_months: int = 12
    """``[hybrid] seasonality_min_months``: months of tracking a store needs before the model takes
    the season out of its label windows and puts it back into its forecast (``clv.season``); 0 = never."""
    seasonality_max_p: float = 0.05
    """``[hybrid] seasonality_max_p``: the season's F test (``clv.season.season_from_table``) must give a
    p-value below this."""
    hybrid_blend: bool = True
    hybrid_naive: bool = True
    """``[hybrid] naive_component``: the blend may include the naive spend-rate rule (``blend_weight``)."""
    sharpen: bool = True
    buy_classifier: bool = True
    """``[hybrid] buy_classifier``: train the buy classifier of the mixture median point rule."""
    selection_metric: str = "normalized_gini"
    selection_tolerance: float = 0.0
    max_total_error: float = 0.15
    mae_significance_z: float = 1.645
    shap_sample: int = 2000
    interaction_sample: int = 400
    top_interactions: int = 20
    explain_max_customers: int = 50000
    """``[explain] max_customers``: a larger store's SHAP sample is drawn from that many customers (0 = all)."""
    max_selection_rows: int = 0
    max_selection_training_rows: int = 0
    """``[sampling] max_selection_training_rows``: rows the objective selection trains on, over its windows (0 = no cap)."""
    max_training_rows: int = 0
    max_btyd_fit_customers: int = 0
    max_extension_rows: int = 0
    """``[sampling] max_extension_rows``: customers the extension factor is measured on (0 = all)."""

    def with_label_days(self, days: int) -> "ClvConfig":
        """This config training on ``days``-day labels (``windows.supported_label_window``: what the
        store's history supports at a cutoff, at most ``label_horizon_days``)."""
        return replace(self, label_horizon_days=int(days))

    def for_backtest(self, horizon_days: int, label_days: int | None = None) -> "ClvConfig":
        """The config a dataset backtest uses: its holdout as horizon and the label window at most
        the holdout, or ``label_days`` (what the history supports, ``windows.supported_label_window``:
        at most those two, or a closed season's whole cycle). The training windows are production's
        (``[windows]``): the backtest measures the model a store of that history is served."""
        label = min(self.label_horizon_days, horizon_days)
        return replace(self, horizon_days=int(horizon_days), label_horizon_days=int(label_days or label))


def default_config_path() -> Path:
    return Path(str(resources.files("clv_platform.models").joinpath("clv.toml")))


def load_config(path: str | Path | None = None) -> ClvConfig:
    """Read ``clv.toml`` (default: the one shipped beside this module)."""
    with open(path or default_config_path(), "rb") as handle:
        raw = tomllib.load(handle)
    if raw.get("backtest"):
        # until 6 December 2026 the backtest trained on its own windows (91-day labels, one window),
        # so it did not measure the model a store is served; a file still setting them is refused
        # rather than silently ignored
        raise ValueError(f"{path or default_config_path()}: [backtest] is no longer read: the backtest trains on "
                         "[horizon] label_horizon_days and [windows] as production does, its label window cut to the "
                         "holdout and to what the history supports; remove the section")
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
        window_count=int(windows.get("count", 1)),
        window_step_days=int(windows.get("step_days", 30)),
        xgboost=dict(raw.get("xgboost", {})),
        objectives=tuple(dict(o) for o in raw.get("objectives", ())),
        hybrid_offset=bool(raw.get("hybrid", {}).get("btyd_offset", True)),
        level_calibration=bool(raw.get("hybrid", {}).get("level_calibration", True)),
        extension_calibration=bool(raw.get("hybrid", {}).get("extension_calibration", True)),
        seasonality_min_months=int(raw.get("hybrid", {}).get("seasonality_min_months", 12)),
        seasonality_max_p=float(raw.get("hybrid", {}).get("seasonality_max_p", 0.05)),
        hybrid_blend=bool(raw.get("hybrid", {}).get("blend", True)),
        hybrid_naive=bool(raw.get("hybrid", {}).get("naive_component", True)),
        sharpen=bool(raw.get("hybrid", {}).get("sharpen", True)),
        buy_classifier=bool(raw.get("hybrid", {}).get("buy_classifier", True)),
        selection_metric=str(selection.get("metric", "normalized_gini")),
        selection_tolerance=float(selection.get("tolerance", 0.0)),
        max_total_error=float(selection.get("max_total_error", 0.15)),
        mae_significance_z=float(selection.get("mae_significance_z", 1.645)),
        shap_sample=int(explain.get("shap_sample", 2000)),
        interaction_sample=int(explain.get("interaction_sample", 400)),
        top_interactions=int(explain.get("top_interactions", 20)),
        explain_max_customers=int(explain.get("max_customers", 50000)),
        max_selection_rows=int(sampling.get("max_selection_rows", 0)),
        max_selection_training_rows=int(sampling.get("max_selection_training_rows", 0)),
        max_training_rows=int(sampling.get("max_training_rows", 0)),
        max_btyd_fit_customers=int(sampling.get("max_btyd_fit_customers", 0)),
        max_extension_rows=int(sampling.get("max_extension_rows", 0)),
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
