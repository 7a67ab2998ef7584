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

The package is split by concern: ``config`` (settings, objectives), ``windows`` (training data),
``booster`` (the model and training one booster), ``season`` (labels out of season, forecasts into it), ``objective`` (selection on the validation
window), ``train`` (the served model and the BTYD fallback), ``score`` (scores, intervals, tiers),
``explain`` (SHAP, SVG/HTML) and ``backtest`` (the ML side of the dataset backtest). Every public
name is re-exported here, so ``from clv_platform.models import clv; clv.train_clv(...)`` works.
"""

from clv_platform.models.clv.config import (  # noqa: F401
    HYBRID,
    XGBOOST,
    VARIANTS,
    BTYD_FEATURES,
    DERIVED_FEATURES,
    ClvConfig,
    default_config_path,
    load_config,
    ObjectiveSpec,
    objective_candidates,
)
from clv_platform.models.clv.season import ClvSeason, closures_at, fit_season, deseasonalize  # noqa: F401
from clv_platform.models.clv.windows import (  # noqa: F401
    CycleTooShort,
    HistoryTooShort,
    LabelWindow,
    MIN_LABEL_DAYS,
    MIN_REPEAT_CUSTOMERS,
    supported_label_window,
    add_derived_features,
    btyd_summary,
    naive_spend,
    naive_btyd_ratio,
    fit_btyd_at,
    btyd_features,
    window_ends,
    cap_rows,
    training_windows,
    feature_list,
)
from clv_platform.models.clv.booster import (  # noqa: F401
    OFFSET_FLOOR,
    threads,
    ClvModel,
    uses_offset,
    train_buy_classifier,
    calibration_shift,
    train_booster,
)
from clv_platform.models.clv.objective import (  # noqa: F401
    Selection,
    select_objective,
    LEVEL_BOUNDS,
    level_factor,
    blend_weight,
    blend_mean,
    blend_pairs,
    naive_validation,
    BLEND_GRID,
    SHARPEN_GRID,
    sharpen,
    sharpen_exponent,
    SHARPEN,
    MEDIAN,
    POINT_RULES,
    P50_COLUMN,
    median_point,
    point_rule,
    apply_point_rule,
    SHRINK_GRID,
    shrunk_mean,
    MIXTURE,
    MIXTURE_SHRINK_GRID,
    POSITIVE_LEVELS,
    POSITIVE_COLUMNS,
    P_BUY_HORIZON,
    P_BUY_LABEL,
    BUY_P_COLUMN,
    mixture_median,
    carry_buy_probability,
)
from clv_platform.models.clv.train import (  # noqa: F401
    EXTENSION_BOUNDS,
    BTYD_ONLY,
    btyd_only,
    btyd_extension_factor,
    TrainedClv,
    train_clv,
    level_drift,
    serve_or_fall_back,
    point_forecasts,
    p50_ratio,
    point_rule_columns,
)
from clv_platform.models.clv.score import (  # noqa: F401
    scoring_frame,
    BTYD_SCORE_COLUMNS,
    btyd_scores_table,
    INTERVAL_COLUMNS,
    MEDIAN_COLUMN,
    MIXTURE_COLUMNS,
    frame_from_tables,
    discount_factor,
    predict_scores,
    reconcile_alive,
    reconcile_alive_with,
    alive_scale,
    SPEND_COLUMNS,
    ALIVE_EVIDENCE_DAYS,
    interval_columns,
    TIERS,
    REST,
    assign_tiers,
)
from clv_platform.models.clv.explain import (  # noqa: F401
    shap_importance,
    shap_interactions,
    importance_svg,
    explainability_html,
)
from clv_platform.models.clv.backtest import (  # noqa: F401
    MLBacktest,
    ml_backtest,
)
