"""One registry for both models: a candidate is compared with the served model on the same
validation rows, a worse one is refused (CLV and next purchase), rollback serves an older version."""

from datetime import date, datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv, metrics, registry
from clv_platform.models.clv_assets import registration_gate
from clv_platform.models.npd import NPDModel
from clv_platform.models.npd_assets import load_latest_npd_model, npd_registration_gate, save_npd_model
from clv_platform.models.npd_backtest import evaluate

LOG1P = clv.ObjectiveSpec("log1p_squarederror", {"objective": "reg:squarederror"}, "log1p")


def _spend_frame(seed: int, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"frequency": rng.poisson(1.5, n).astype(float), "days_since_last_order": rng.integers(0, 300, n)})
    rate = (1 + frame["frequency"]) * np.exp(-frame["days_since_last_order"] / 150)
    frame["btyd_expected_spend"] = 20 * rate
    frame["label_spend"] = np.where(rng.random(n) < np.clip(0.3 * rate, 0, 0.95), rng.gamma(2.0, 20.0, n), 0.0)
    return frame


def _trained_clv(frame: pd.DataFrame, valid: pd.DataFrame, shuffle: bool, seed: int = 0) -> clv.TrainedClv:
    config = clv.load_config()
    train = frame.copy()
    if shuffle:  # a candidate that learned nothing: labels permuted
        train["label_spend"] = np.random.default_rng(seed).permutation(train["label_spend"].to_numpy())
    columns = ["frequency", "days_since_last_order"]
    booster, rounds = clv.train_booster(config, LOG1P, train, columns, num_boost_round=60)
    model = clv.ClvModel(booster, columns, LOG1P, clv.HYBRID, 90, 1.0, rounds, False)
    block = metrics.regression_metrics(valid["label_spend"].to_numpy(), model.predict_label_window(valid))
    selection = clv.Selection(LOG1P, [{"objective": LOG1P.name, **block}], "normalized_gini", rounds, 1.0,
                              "2026-10-31", ["2026-08-02"])
    return clv.TrainedClv(model, selection, date(2026, 10, 31), len(train), ["2026-10-31"], block, valid)


def test_clv_gate_refuses_a_worse_candidate_on_the_same_window(data_env):
    train, valid = _spend_frame(1), _spend_frame(2)
    served = _trained_clv(train, valid, shuffle=False)
    worse = _trained_clv(train, valid, shuffle=True)
    config = clv.load_config()
    with duckdb.connect(str(data_env / "r.duckdb")) as conn:
        assert registration_gate(conn, served)["register"]  # nothing served yet
        first = registry.save_model(conn, served, config, register=True)
        decision = registration_gate(conn, worse)
        assert decision["register"] is False
        assert decision["served_version"] == first.version
        assert "worse than served" in decision["reason"] and "normalized_gini" in decision["reason"]
        # the served model was scored on the candidate's own validation rows
        assert decision["served_metrics"]["normalized_gini"] == pytest.approx(served.validation_metrics["normalized_gini"])
        refused = registry.save_model(conn, worse, config, register=decision["register"])
        assert registry.latest_registered(conn)["model_version"] == first.version
        again = _trained_clv(train, valid, shuffle=False)
        assert registration_gate(conn, again)["register"]  # as good as the served one: registered
        newer = registry.save_model(conn, again, config, register=True)
        assert registry.latest_registered(conn)["model_version"] == newer.version
        registry.rollback_to(conn, registry.DEFAULT_MODEL_NAME, first.version)
        assert registry.latest_registered(conn)["model_version"] == first.version
        with pytest.raises(LookupError):
            registry.rollback_to(conn, registry.DEFAULT_MODEL_NAME, "19990101T000000Z")
        assert refused.version != first.version


def _survival_frame(seed: int, n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n).astype(float)
    times = rng.exponential(np.array([15.0, 60.0, 400.0])[group.astype(int)])
    frame = pd.DataFrame({"group": group, "noise": rng.normal(size=n), "feature_cutoff": pd.Timestamp("2026-08-02")})
    frame["days_to_next_purchase"] = np.where(times <= 90, np.ceil(times), np.nan)
    return frame


def test_npd_gate_refuses_a_worse_candidate_on_the_same_window(data_env):
    train, holdout = _survival_frame(3), _survival_frame(4)
    features = ["group", "noise"]

    def fit(frame):
        return NPDModel(distribution="logistic", scale=1.0, n_threads=1, max_rounds=100).fit(
            frame, features, horizon_days=90)

    good = fit(train)
    shuffled = train.assign(group=np.random.default_rng(5).permutation(train["group"].to_numpy()))
    bad = fit(shuffled)
    actual = holdout["days_to_next_purchase"].to_numpy(dtype=float)
    bad_metrics = evaluate(actual, bad.predict(holdout, within_days=90), (7, 30, 90))
    good_metrics = evaluate(actual, good.predict(holdout, within_days=90), (7, 30, 90))
    meta = {"cutoff": "2026-10-31", "training_horizon_days": 90, "n_train": len(train)}
    with duckdb.connect(str(data_env / "r.duckdb")) as conn:
        assert npd_registration_gate(conn, holdout, good_metrics, 90)["register"]
        served_version = save_npd_model(good, meta, conn=conn, register=True, metrics=good_metrics)
        decision = npd_registration_gate(conn, holdout, bad_metrics, 90)
        assert decision["register"] is False and "auc_30d" in decision["reason"]
        assert decision["served_metrics"]["auc_30d"] == pytest.approx(good_metrics["auc_30d"])
        refused = save_npd_model(bad, meta, conn=conn, register=False, metrics=bad_metrics)
        # the newest file is the refused one, but the served model stays the registered one
        _, served_meta = load_latest_npd_model(conn)
        assert served_meta["model_version"] == served_version != refused
        assert npd_registration_gate(conn, holdout, good_metrics, 90)["register"]
