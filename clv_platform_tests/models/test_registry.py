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
