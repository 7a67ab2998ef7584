"""Model registry: save -> load gives the same predictions; the newest registered version is served."""

import json
from datetime import date, datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv, registry


def _trained(spec: clv.ObjectiveSpec, offset: bool, seed: int = 0) -> tuple[clv.TrainedClv, pd.DataFrame]:
    """A small hybrid model on synthetic zero-inflated spend (fast; the registry only stores it)."""
    rng = np.random.default_rng(seed)
    n = 600
    frame = pd.DataFrame({
        "frequency": rng.poisson(1.0, n),
        "days_since_last_order": rng.integers(0, 300, n),
        "btyd_expected_spend": rng.gamma(1.0, 20.0, n),
        "btyd_expected_spend_horizon": rng.gamma(1.0, 40.0, n),
    })
    frame["label_spend"] = np.where(rng.random(n) < 0.6, 0.0, frame["btyd_expected_spend"] * rng.gamma(2.0, 1.0, n))
    config = clv.load_config()
    columns = ["frequency", "days_since_last_order", "btyd_expected_spend"]
    booster, rounds = clv.train_booster(config, spec, frame, columns, num_boost_round=30, offset=offset)
    model = clv.ClvModel(booster, columns, spec, clv.HYBRID, 90, 1.07 if spec.target == "log1p" else 1.0,
                         rounds, offset)
    selection = clv.Selection(spec, [{"objective": spec.name, "mae": 1.0, "normalized_gini": 0.5}],
                              "normalized_gini", rounds, model.smearing, "2026-10-31", ["2026-08-02"])
    trained = clv.TrainedClv(model, selection, date(2026, 10, 31), n, ["2026-10-31"],
                             {"mae": 1.0, "normalized_gini": 0.5})
    return trained, frame


@pytest.mark.parametrize(
    ("spec", "offset"),
    [
        (clv.ObjectiveSpec("tweedie_1.5", {"objective": "reg:tweedie", "tweedie_variance_power": 1.5}), True),
        (clv.ObjectiveSpec("log1p_squarederror", {"objective": "reg:squarederror"}, "log1p"), False),
    ],
)
def test_round_trip_gives_identical_predictions(data_env, spec, offset):
    trained, frame = _trained(spec, offset)
    trained.model.point_rule, trained.model.sharpen = clv.MEDIAN, 1.3
    config = clv.load_config()
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        record = registry.save_model(conn, trained, config, trained_at=datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc))
        model, sidecar = registry.load_latest(conn)
        row = conn.execute("select * from ml.model_runs").df().iloc[0]
    assert record.version == "20261121T230000Z" and record.booster_path.name == "clv_xgb_20261121T230000Z.ubj"
    assert record.booster_path.parent == data_env / "models" and record.sidecar_path.is_file()
    assert sidecar["features"] == trained.model.features and sidecar["objective"] == spec.name
    assert sidecar["btyd_offset"] is offset and sidecar["cutoff"] == "2026-10-31"
    assert row["objective"] == spec.name and row["n_train"] == len(frame) and bool(row["is_registered"])
    assert json.loads(row["metrics"]) == {"mae": 1.0, "normalized_gini": 0.5}
    assert row["cutoff"].date() == date(2026, 10, 31) and row["horizon_days"] == config.horizon_days
    np.testing.assert_array_equal(model.predict_label_window(frame), trained.model.predict_label_window(frame))
    np.testing.assert_array_equal(model.predict(frame, 365), trained.model.predict(frame, 365))
    # the served point rule comes back with the model: the median of the same means
    assert (sidecar["point_rule"], model.point_rule, model.sharpen) == (clv.MEDIAN, clv.MEDIAN, 1.3)
    ratio = np.linspace(0.0, 1.5, len(frame))
    mean = model.predict(frame, 365)
    np.testing.assert_allclose(model.point(mean, 365, ratio), mean * ratio)


def test_latest_registered_skips_unregistered_and_older(data_env):
    spec = clv.ObjectiveSpec("tweedie_1.5", {"objective": "reg:tweedie", "tweedie_variance_power": 1.5})
    config = clv.load_config()
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        assert registry.latest_registered(conn) is None
        with pytest.raises(LookupError):
            registry.load_latest(conn)
        old, _ = _trained(spec, True, seed=1)
        new, _ = _trained(spec, True, seed=2)
        at = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)
        first = registry.save_model(conn, old, config, trained_at=at)
        same_second = registry.save_model(conn, new, config, trained_at=at)
        assert same_second.version == "20261121T230000Z_2"
        newest = registry.save_model(conn, new, config, register=False,
                                     trained_at=datetime(2026, 11, 22, tzinfo=timezone.utc))
        assert registry.latest_registered(conn)["model_version"] == same_second.version
        registry.set_registered(conn, "clv_xgb", newest.version, True)
        assert registry.load_latest(conn)[1]["model_version"] == newest.version
        registry.set_registered(conn, "clv_xgb", newest.version, False)
        registry.set_registered(conn, "clv_xgb", same_second.version, False)
        assert registry.latest_registered(conn)["model_version"] == first.version
        assert conn.execute("select count(*) from ml.model_runs").fetchone()[0] == 3


# A feature name from before the issue-16 rename (days_since_last_order's old name), spelled so
# that the rename script leaves it alone: what a model saved before the rename still lists.
RETIRED = "recency" + "_days"


def test_require_features_names_what_a_served_model_misses():
    registry.require_features("clv_xgb", "v1", ["frequency", "days_since_last_order"],
                              ["customer_id", "frequency", "days_since_last_order", "T_days"])
    with pytest.raises(registry.ServedModelFeaturesMissing) as raised:
        registry.require_features("npd_aft", "20261101T000000Z", ["frequency", RETIRED, "tenure" + "_days"],
                                  ["customer_id", "frequency", "days_since_last_order", "T_days"])
    message = str(raised.value)
    assert f"{RETIRED}, tenure_days" in message and "npd_aft model 20261101T000000Z" in message
    assert "retrain_models" in message
    assert isinstance(raised.value, LookupError)


def test_scoring_with_a_model_trained_on_retired_feature_names_fails_clearly(data_env):
    """A model registered before a feature rename cannot be scored on today's features: the scores
    asset fails naming the missing columns and the job that retrains, not a KeyError inside XGBoost.
    (Training copes already: such a served model does not block the candidate, see ``decide``.)"""
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from clv_platform.models.clv_assets import customer_clv
    from clv_platform.models.clv.score import BTYD_SCORE_COLUMNS, INTERVAL_COLUMNS

    spec = clv.ObjectiveSpec("tweedie_1.5", {"objective": "reg:tweedie", "tweedie_variance_power": 1.5})
    trained, frame = _trained(spec, True)
    old_frame = frame.rename(columns={"days_since_last_order": RETIRED})
    columns = ["frequency", RETIRED, "btyd_expected_spend"]
    booster, rounds = clv.train_booster(clv.load_config(), spec, old_frame, columns, num_boost_round=10, offset=True)
    old_model = clv.ClvModel(booster, columns, spec, clv.HYBRID, 90, 1.0, rounds, True)
    old = clv.TrainedClv(old_model, trained.selection, date(2026, 10, 31), len(frame), ["2026-10-31"],
                         {"mae": 1.0, "normalized_gini": 0.5})
    database = data_env / "clv.duckdb"
    ids = [f"c{i}" for i in range(len(frame))]
    features = frame[["frequency", "days_since_last_order"]].assign(customer_id=ids)
    btyd_scores = pd.DataFrame({"customer_id": ids, **{target: 1.0 for target in BTYD_SCORE_COLUMNS.values()},
                                **{column: 1.0 for column in INTERVAL_COLUMNS}})
    with duckdb.connect(str(database)) as conn:
        registry.save_model(conn, old, clv.load_config(), trained_at=datetime(2026, 11, 1, tzinfo=timezone.utc))
        conn.execute("create schema if not exists features; create schema if not exists ml")
        conn.execute("create table features.customer_features as select * from features")
        conn.execute("create table ml.btyd_scores as select * from btyd_scores")
    result = dg.materialize([customer_clv], resources={"duckdb": DuckDBResource(database=str(database))},
                            raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = str(failure.event_specific_data.error)
    assert "ServedModelFeaturesMissing" in error and f"have: {RETIRED} (renamed or removed" in error
    assert "clv_xgb model 20261101T000000Z" in error and "retrain_models job" in error
    assert result.get_asset_materialization_events() == []  # no scores written from a half-usable model
