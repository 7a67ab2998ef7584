"""A store whose history is too short to train the models (a few weeks of orders, or nobody
bought twice) builds through to marts.customer_scores: ml/clv_model registers a BTYD-only model
(no booster) and scores/customer_clv serves ml.btyd_scores' forecast for every customer;
ml/npd_model registers the BTYD next-purchase fallback and scores/customer_npd reads its
probabilities and dates off the same BTYD fit; the lifecycle rule does without a population
interval when nobody bought twice."""

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
from clv_platform.models import clv, npd, registry
from clv_platform.models.clv_assets import registration_gate
from clv_platform_tests.cheap_config import use_files_only_store


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


def build_files_store(mp: pytest.MonkeyPatch, tmp, orders: pd.DataFrame, keys) -> tuple[int, dict]:
    """`clv-platform files` on ``orders`` as a files-only store in ``tmp`` (the cheaper clv.toml; ``mp``
    keeps its settings until the caller undoes it): (exit code, latest materialization metadata of
    each asset of ``keys``, None for one that did not materialize)."""
    inbox = use_files_only_store(mp, tmp, "USD")
    (tmp / ".dagster").mkdir()
    mp.setenv("DAGSTER_HOME", str(tmp / ".dagster"))
    orders.to_csv(inbox / "orders.csv", index=False)
    code = run_files(SimpleNamespace(database=None, retrain=False, import_only=False, build_only=False))
    # a failed step would leave its DuckDB connection in a reference cycle of its traceback: collect
    # it, so that a failure shows as the assertions below rather than a refused read-only connection
    gc.collect()
    instance = dg.DagsterInstance.get()
    assets = {}
    for key in keys:
        event = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
        assets[key] = {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else None
    instance.dispose()
    return code, assets


@pytest.fixture(scope="module", params=["seven_weeks", "no_repeat_buyer"])
def short_store(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    mp = pytest.MonkeyPatch()
    orders = _orders(repeat=request.param == "seven_weeks")
    code, assets = build_files_store(mp, tmp, orders, ("ml/clv_model", "ml/npd_model", "scores/customer_npd",
                                                        "scores/customer_segments"))
    yield SimpleNamespace(code=code, db=tmp / "files.duckdb", orders=orders, metadata=assets["ml/clv_model"],
                          assets=assets, kind=request.param)
    mp.undo()


def test_a_short_store_registers_a_btyd_only_model_with_the_reason(short_store):
    assert short_store.metadata is not None, "ml/clv_model did not materialize"
    meta = short_store.metadata
    assert meta["serves"] == "btyd" and meta["registered"] is True
    # the label window the history supports (clv.supported_label_window) is under two weeks, or nobody bought twice
    assert meta["serving_reason"].startswith(
        "history too short to train: the 10th repeat buyer came on 2026-01-20, 33 days before 2026-02-22: a label window "
        "of h days needs 3h days after that" if short_store.kind == "seven_weeks" else
        "history too short to train: no customer has bought on two different days by 2026-02-22: there is no repeat "
        "behaviour to learn yet")
    assert meta["label_window"] == "180 days (configured; the history is too short to train)"
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


def test_a_short_store_builds_every_step_through_to_the_marts(short_store):
    assert short_store.code == 0
    customers = short_store.orders["customer_id"].nunique()
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        for table in ("scores.customer_npd", "scores.customer_segments", "marts.customer_scores"):
            rows, distinct = conn.execute(f"select count(*), count(distinct customer_id) from {table}").fetchone()
            assert rows == distinct == customers, table


def test_a_short_store_registers_the_btyd_next_purchase_fallback_with_the_reason(short_store):
    meta = short_store.assets["ml/npd_model"]
    assert meta is not None, "ml/npd_model did not materialize"
    assert meta["serves"] == "btyd" and meta["registered"] is True and meta["objective"] == npd.BTYD_ONLY
    # both stores span seven weeks: nobody has features at C - 90 days, the AFT's label window start
    assert meta["serving_reason"] == "history too short to train: need at least 10 training rows, got 0"
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        runs = conn.execute("select * from ml.model_runs where model_name = 'npd_aft'").df()
    assert len(runs) == 1 and bool(runs["is_registered"].iloc[0]) and runs["objective"].iloc[0] == npd.BTYD_ONLY
    assert runs["model_version"].iloc[0] == meta["model_version"] and runs["path"].iloc[0].endswith(".json")
    sidecar = registry.read_sidecar(runs["path"].iloc[0])
    assert sidecar["serves"] == "btyd" and sidecar["booster_file"] is None
    scored = short_store.assets["scores/customer_npd"]
    assert scored["serves"] == "btyd" and scored["serving_reason"] == meta["serving_reason"]
    assert scored["model_version"] == meta["model_version"] and scored["btyd_model"] == "mbgnbd"  # the cheap config's


def test_a_short_store_reads_its_next_purchase_off_the_btyd_fit(short_store):
    """P(30 d) is the served MBG/NBD's: p_alive of ml.btyd_scores x (1 - ((alpha + T) / (alpha + T + 30/7))^(r + x))
    with the stored fit's r and alpha; the marts carry the same values and the date contract holds."""
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        (params,) = conn.execute("select params from ml.stored_fits where component = 'btyd'").fetchone()
        scores = conn.execute("""
            select n.*, b.p_alive, b.frequency, b.T_weeks, f.feature_cutoff,
                   m.p_purchase_30d as mart_p30, m.p_purchase_90d as mart_p90,
                   m.predicted_next_purchase_date as mart_date
            from scores.customer_npd n join ml.btyd_scores b using (customer_id)
            join features.customer_features f using (customer_id)
            join marts.customer_scores m using (customer_id)""").df()
    transaction = json.loads(params)["transaction_params"]
    r, alpha = transaction["r"], transaction["alpha"]
    base = alpha + scores["T_weeks"].to_numpy()
    expected = scores["p_alive"].to_numpy() * (1 - (base / (base + 30 / 7)) ** (r + scores["frequency"].to_numpy()))
    np.testing.assert_allclose(scores["p_purchase_30d"], expected, rtol=1e-9, atol=1e-15)
    for column in ("p_purchase_7d", "p_purchase_30d", "p_purchase_90d"):
        assert scores[column].notna().all() and scores[column].between(0, 1).all(), column
    assert (scores["p_purchase_7d"] <= scores["p_purchase_30d"]).all()
    assert (scores["p_purchase_30d"] <= scores["p_purchase_90d"]).all()
    dated = scores["predicted_next_purchase_date"].notna()
    assert (dated == (scores["p_purchase_90d"] >= npd.DATE_MIN_PROBABILITY)).all()
    assert (dated == scores["days_to_next_purchase"].notna()).all()
    days = np.ceil(scores.loc[dated, "days_to_next_purchase"].to_numpy())
    assert (pd.to_datetime(scores.loc[dated, "predicted_next_purchase_date"])
            == pd.to_datetime(scores.loc[dated, "feature_cutoff"]) + pd.to_timedelta(days, unit="D")).all()
    assert (scores.loc[dated, "days_to_next_purchase"] <= 90).all()
    np.testing.assert_allclose(scores["mart_p30"], scores["p_purchase_30d"], atol=1e-4)  # the mart rounds
    assert (scores["mart_date"].notna() == dated).all()
    if short_store.kind == "seven_weeks":
        assert dated.any()  # a young store's customers are likely alive: some get a date


def test_a_store_without_repeat_buyers_says_what_its_lifecycle_stages_rest_on(short_store):
    meta = short_store.assets["scores/customer_segments"]
    assert meta is not None, "scores/customer_segments did not materialize"
    if short_store.kind == "no_repeat_buyer":
        assert meta["lifecycle_cadence"].startswith("no population interval: 0 repeat buyers")
    else:
        assert meta["lifecycle_cadence"].startswith("cadence: each repeat buyer's own mean interval")


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


def test_a_short_store_tries_to_train_again_when_an_import_lengthens_its_history(short_store):
    """The stand-ins of a short history are served until a trained model can be tried: the next
    import trains (``sensors.needs_training``) instead of waiting for the weekly retrain."""
    from clv_platform.automation.sensors import needs_training
    from clv_platform.settings import load_settings

    assert short_store.code == 0
    models = load_settings().models_dir
    with duckdb.connect(str(short_store.db), read_only=True) as conn:
        served = registry.registered_paths(conn)
    assert set(served) == {registry.DEFAULT_MODEL_NAME, registry.NPD_MODEL_NAME}
    assert all(registry.short_history_stand_in(registry.read_sidecar(path)) for path in served.values())
    assert needs_training(short_store.db, models)
