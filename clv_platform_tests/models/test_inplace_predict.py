"""Scoring predicts with ``inplace_predict`` (no DMatrix): the values must be the DMatrix path's bit
for bit - with missing features, a BTYD base margin, an output margin and the AFT booster - and a
matrix of other feature names must be refused as the DMatrix refused it."""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clv_platform.models.clv.booster import ClvModel, _dmatrix, predict_rows
from clv_platform.models.clv.config import ObjectiveSpec
from clv_platform.models.npd import NPDModel

FEATURES = ["frequency", "recency_days", "monetary", "tenure_days"]


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Features with every kind of missing value scoring meets: NaN floats and a nullable integer
    column with NA (DuckDB's BIGINT with nulls), and a BTYD spend column (some zero, some NaN)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(n)],
        "frequency": pd.array(rng.poisson(2.0, n), dtype="Int64"),
        "recency_days": rng.uniform(0, 400, n),
        "monetary": rng.gamma(2.0, 30.0, n),
        "tenure_days": rng.uniform(30, 800, n),
        "btyd_expected_spend": rng.gamma(1.5, 20.0, n),
    })
    frame.loc[rng.random(n) < 0.1, "recency_days"] = np.nan
    frame.loc[rng.random(n) < 0.1, "monetary"] = np.nan
    frame.loc[rng.random(n) < 0.1, "frequency"] = pd.NA
    frame.loc[rng.random(n) < 0.05, "btyd_expected_spend"] = 0.0
    frame.loc[rng.random(n) < 0.05, "btyd_expected_spend"] = np.nan
    return frame


def _label(frame: pd.DataFrame) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = np.nan_to_num(frame["monetary"].to_numpy(dtype=float), nan=20.0)
    return np.where(rng.random(len(frame)) < 0.4, base * rng.uniform(0.5, 1.5, len(frame)), 0.0)


def test_the_hybrid_and_its_classifier_predict_the_dmatrix_values_bit_for_bit():
    frame = _frame()
    spec = ObjectiveSpec("tweedie_1.2", {"objective": "reg:tweedie", "tweedie_variance_power": 1.2})
    train = frame.assign(label_spend=_label(frame))
    booster = xgb.train({"objective": "reg:tweedie", "tweedie_variance_power": 1.2, "max_depth": 4, "nthread": 1},
                        _dmatrix(train, FEATURES, spec, "btyd_expected_spend", label=True), num_boost_round=40)
    classifier_matrix = xgb.DMatrix(frame[FEATURES].astype("float64").to_numpy(), feature_names=FEATURES)
    classifier_matrix.set_label((train["label_spend"] > 0).astype(float))
    classifier = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, classifier_matrix, 30)
    model = ClvModel(booster=booster, features=FEATURES, objective=spec, variant="hybrid", label_horizon_days=90,
                     offset=True, level=1.1, classifier=classifier, classifier_shift=0.2)
    scored = _frame(2000, seed=7)  # other rows than the training ones, with their own missing values

    # the path before: a DMatrix with the BTYD offset as base margin
    old = booster.predict(_dmatrix(scored, FEATURES, spec, "btyd_expected_spend")).astype(float)
    expected = np.clip(old, 0.0, None) * 1.1
    got = model.predict_label_window(scored)
    assert np.array_equal(got, expected) and got.dtype == np.float64
    assert np.isnan(scored[["recency_days", "monetary"]].to_numpy()).any() and scored["frequency"].isna().any()
    assert got.std() > 0

    old_margin = classifier.predict(xgb.DMatrix(scored[FEATURES].astype("float64").to_numpy(), feature_names=FEATURES),
                                    output_margin=True).astype(float)
    assert np.array_equal(model.buy_probability(scored), 1.0 / (1.0 + np.exp(-(old_margin + 0.2))))

    # the feature names are still checked (the DMatrix refused a matrix of other names)
    with pytest.raises(ValueError, match="trained on the features"):
        predict_rows(booster, scored, list(reversed(FEATURES)))


def test_the_next_purchase_model_predicts_the_dmatrix_values_bit_for_bit():
    frame = _frame(1500)
    rng = np.random.default_rng(3)
    days = rng.exponential(40.0, len(frame))
    frame["days_to_next_purchase"] = np.where(days <= 90, np.ceil(days), np.nan)
    model = NPDModel(distribution="normal", scale=1.0, max_rounds=40, early_stopping_rounds=10).fit(
        frame, FEATURES, horizon_days=90)
    scored = _frame(1000, seed=11)
    from clv_platform.models.npd import _as_matrix

    old = model.booster_.predict(xgb.DMatrix(_as_matrix(scored, FEATURES)))
    got = model.predicted_time(scored)
    assert np.array_equal(got, old) and got.std() > 0
