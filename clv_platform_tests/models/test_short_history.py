"""A store whose history is too short to train the CLV model (a few weeks of orders, or nobody
bought twice): ml/clv_model registers a BTYD-only model (no booster) instead of failing, and
scores/customer_clv serves ml.btyd_scores' forecast for every customer."""

import gc
import json
from datetime import date, datetime, timezone
from types import SimpleNamespace

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.cli import run_files
from clv_platform.models import clv, registry
from clv_platform.models.clv_assets import registration_gate
from clv_platform_tests.cheap_config import cheap_clv_config, use_clv_config


def _orders(repeat: bool, customers: int = 300, days: int = 49, seed: int = 1) -> pd.DataFrame:
    """Generic-layout orders over ``days`` days; with ``repeat`` about a quarter of the customers
    buy again (3-20 days apart), without it every customer buys once."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-05")
    rows, order = [], 1000
    for c in range(customers):
        day = start + pd.Timedelta(days=int(rng.integers(0, days)))
        n = 1 + (int(rng.poisson(1.0)) if repeat and rng.random() < 0.4 else 0)
        for _ in range(n):
            if day >= start + pd.Timedelta(days=days):
                break
            rows.append((f"C{c:04d}", f"O{order}", day.date().isoformat(), round(float(rng.gamma(2.0, 30.0)), 2)))
            order += 1
            day += pd.Timedelta(days=int(rng.integers(3, 20)))
    return pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "amount"])


@pytest.fixture(scope="module", params=["seven_weeks", "no_repeat_buyer"])
def short_store(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    inbox = tmp / "inbox"
    inbox.mkdir()
    (tmp / ".dagster").mkdir()
    mp = pytest.MonkeyPatch()
    use_clv_config(mp, cheap_clv_config(tmp))
    for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_SHOP_DOMAIN", "KLAVIYO_API_KEY", "CLV_DUCKDB_PATH", "CLV_AS_OF",
                "CLV_MODELS_DIR"):
        mp.delenv(var, raising=False)
    mp.setenv("CLV_SOURCE", "files")
    mp.setenv("CLV_DATA_DIR", str(tmp))
    mp.setenv("CLV_INBOX_DIR", str(inbox))
    mp.setenv("CLV_FILE_CURRENCY", "USD")
    mp.setenv("DAGSTER_HOME", str(tmp / ".dagster"))
    orders = _orders(repeat=request.param == "seven_weeks")
    orders.to_csv(inbox / "orders.csv", index=False)
    code = run_files(SimpleNamespace(database=None, retrain=False, import_only=False, build_only=False))
    # a failed step (ml/npd_model has no fallback) leaves its DuckDB connection in a reference
    # cycle of its traceback: collect it, or the read-only connections below are refused
    gc.collect()
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey(["ml", "clv_model"]))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else None
    instance.dispose()
    yield SimpleNamespace(code=code, db=tmp / "files.duckdb", orders=orders, metadata=metadata, kind=request.param)
    mp.undo()


def test_a_short_store_registers_a_btyd_only_model_with_the_reason(short_store):
    assert short_store.metadata is not None, "ml/clv_model did not materialize"
    meta = short_store.metadata
    assert meta["serves"] == "btyd" and meta["registered"] is True
    assert meta["serving_reason"].startswith("history too short to train: no training window with customers")
    assert meta["objective"] == clv.BTYD_ONLY and meta["n_train"] == 0
    assert "booster_path" not in meta and "explainability_url" not in meta
    assert meta["explainability"].startswith("none: a BTYD-only model has no booster")
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        runs = conn.execute("select * from ml.model_runs where model_name = 'clv_xgb'").df()
        importance = conn.execute("select count(*) from ml.clv_feature_importance").fetchone()[0]
        interactions = conn.execute("select count(*) from ml.clv_feature_interactions").fetchone()[0]
    assert len(runs) == 1 and bool(runs["is_registered"].iloc[0]) and runs["objective"].iloc[0] == clv.BTYD_ONLY
    assert runs["path"].iloc[0].endswith(".json") and json.loads(runs["metrics"].iloc[0]) == {}
    assert importance == 0 and interactions == 0
    sidecar = registry.read_sidecar(runs["path"].iloc[0])
    assert sidecar["booster_file"] is None and sidecar["serves_btyd"] is True and sidecar["features"] == []
    assert sidecar["point_rule"] == clv.SHARPEN and sidecar["sharpen"] == 1.0
    assert sidecar["serving"]["reason"] == meta["serving_reason"]
    # no label window to measure the total error on: the store-total interval is the process one
    assert sidecar["serving"]["total_error"]["method_log_errors"] == []


def test_a_short_store_is_scored_with_the_btyd_forecast_for_every_customer(short_store):
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        scores = conn.execute("""
            select s.customer_id, s.predicted_clv, s.predicted_clv_point, s.predicted_spend, b.clv, b.expected_spend,
                   s.model_version
            from scores.customer_clv s full join ml.btyd_scores b using (customer_id)""").df()
        (served,) = conn.execute("select model_version from ml.model_runs where model_name = 'clv_xgb' "
                                 "and is_registered").fetchone()
    assert len(scores) == short_store.orders["customer_id"].nunique()
    assert scores["predicted_clv"].notna().all() and scores["clv"].notna().all()
    np.testing.assert_allclose(scores["predicted_clv"], scores["clv"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scores["predicted_spend"], scores["expected_spend"], rtol=1e-9, atol=1e-9)
    # the mean is the served point (no validation window to choose another rule on)
    np.testing.assert_allclose(scores["predicted_clv_point"], scores["clv"], rtol=1e-9, atol=1e-9)
    assert (scores["model_version"] == served).all()


def _short_trained(cutoff=date(2026, 2, 22)) -> clv.TrainedClv:
    return clv.btyd_only(cutoff, clv.load_config(), "no training window with customers among those ending at [...]")


def test_a_btyd_only_model_round_trips_through_the_registry_without_a_booster(data_env):
    trained = _short_trained()
    config = clv.load_config()
    frame = pd.DataFrame({"btyd_expected_spend": [0.0, 3.5, 12.0], "btyd_expected_spend_horizon": [0.0, 9.0, 30.0],
                          "btyd_horizon_ratio": [1.0, 2.5, 2.4]})
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        record = registry.save_model(conn, trained, config, trained_at=datetime(2026, 11, 21, 23, tzinfo=timezone.utc))
        model, sidecar = registry.load_latest(conn)
    assert record.booster_path is None and record.sidecar_path.is_file()
    assert not list(record.sidecar_path.parent.glob("*.ubj"))
    assert model.booster is None and model.serves_btyd and sidecar["booster_file"] is None
    np.testing.assert_array_equal(model.predict_label_window(frame), frame["btyd_expected_spend"].to_numpy())
    np.testing.assert_allclose(model.predict(frame, config.horizon_days, frame["btyd_horizon_ratio"].to_numpy()),
                               frame["btyd_expected_spend"].to_numpy() * frame["btyd_horizon_ratio"].to_numpy())
    assert clv.shap_importance(model, frame).empty and clv.shap_interactions(model, frame).empty


def test_a_btyd_only_candidate_does_not_replace_a_served_model(data_env):
    config = clv.load_config()
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        first = registration_gate(conn, _short_trained())
        assert first["register"] and first["served_version"] is None
        record = registry.save_model(conn, _short_trained(), config)
        second = registration_gate(conn, _short_trained())
    assert not second["register"] and second["served_version"] == record.version
    assert "too short to train" in second["reason"]


def test_history_too_short_is_still_a_value_error():
    # only the hybrid falls back (the xgboost variant has no BTYD to serve and re-raises it): callers
    # that catch the ValueError the windows always raised keep working
    assert issubclass(clv.HistoryTooShort, ValueError)
