"""Fits reused by the nightly run (models/stored_fits.py) and the batched BTYD scoring.

A stored fit must predict exactly what the fitted object did; the nightly run must reuse it and
give the same scores a refit with the same parameters would; a missing, stale, future or
mismatched fit must be refitted; and scoring in batches must give the rows of one pass.
"""

import json
import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.models import btyd, clv, stored_fits
from clv_platform.models.clv_assets import BTYD_FIT_COLUMNS, btyd_scores, write_btyd_scores
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE
from clv_platform.transforms.order_gaps import order_gaps
from clv_platform_tests.dagster_events import materialization_metadata
from clv_platform_tests.demo_cache import demo_database


@pytest.fixture(scope="module")
def features_db(tmp_path_factory):
    """Staging and features of a 1,500-customer demo store (built once)."""
    return demo_database(tmp_path_factory.mktemp("fits") / "fits.duckdb", 1500, features=True)


def _summary(path):
    with duckdb.connect(str(path), read_only=True) as conn:
        frame = conn.execute(f"select {BTYD_FIT_COLUMNS} from {FEATURE_TABLE} order by customer_id").df()
    return frame, clv.btyd_summary(frame)


@pytest.mark.parametrize("family", [btyd.BGNBD, btyd.MBGNBD, btyd.PARETO_NBD, btyd.AUTO])
def test_stored_params_predict_exactly_what_the_fit_did(features_db, family):
    frame, summary = _summary(features_db)
    fitted = btyd.fit_btyd(summary, family)
    # through JSON, as the table stores it
    rebuilt = stored_fits.btyd_from_params(json.loads(json.dumps(stored_fits.btyd_params(fitted))))
    assert rebuilt.model == fitted.model and rebuilt.reason == fitted.reason
    assert rebuilt.params()["transaction_params"] == fitted.params()["transaction_params"]
    pd.testing.assert_frame_equal(rebuilt.score(summary, 52.0, 0.1), fitted.score(summary, 52.0, 0.1), rtol=1e-12)
    low_a, high_a, _ = fitted.spend_intervals(summary, 52.0, draws=50)
    low_b, high_b, _ = rebuilt.spend_intervals(summary, 52.0, draws=50)
    np.testing.assert_array_equal(low_a, low_b)
    np.testing.assert_array_equal(high_a, high_b)
    assert float(rebuilt.score(summary, 52.0)["expected_spend"].sum()) > 0


def test_decide_refits_when_missing_stale_future_or_other_settings():
    cutoff = date(2026, 10, 31)
    fit = stored_fits.StoredFit("btyd", date(2026, 10, 28), datetime(2026, 10, 29), "k1", {})
    assert stored_fits.decide(None, cutoff, "k1", 8) == stored_fits.Decision(False, "no stored fit", 0)
    reused = stored_fits.decide(fit, cutoff, "k1", 8)
    assert reused.reuse and reused.age_days == 3
    assert not stored_fits.decide(fit, cutoff, "k2", 8).reuse  # settings changed
    stale = stored_fits.decide(fit, cutoff, "k1", 2)
    assert not stale.reuse and "3 days old" in stale.reason
    assert stored_fits.decide(fit, cutoff, "k1", 3).reuse  # exactly the limit still reuses
    future = stored_fits.decide(fit, date(2026, 10, 27), "k1", 8)
    assert not future.reuse and "later cutoff" in future.reason  # would leak the future
    forced = stored_fits.decide(fit, cutoff, "k1", 8, force="this run trains the models")
    assert not forced.reuse and forced.reason == "this run trains the models"


def _metadata(result, key=("ml", "btyd_scores")):
    return materialization_metadata(result, key)


def test_nightly_btyd_scores_reuse_the_stored_fit_and_refit_when_it_is_stale(features_db, data_env):
    database = data_env / "nightly.duckdb"
    shutil.copy(features_db, database)
    resources = {"duckdb": DuckDBResource(database=str(database))}

    first = dg.materialize([btyd_scores], resources=resources)
    meta = _metadata(first)
    assert meta["fit"] == "refitted" and meta["fit_reason"] == "no stored fit" and meta["fit_age_days"] == 0
    with duckdb.connect(str(database)) as conn:
        refit_scores = conn.execute("select * from ml.btyd_scores order by customer_id").df()
        stored = stored_fits.load(conn, stored_fits.BTYD)
        cutoff = scoring_cutoff(conn)
    assert stored.fit_cutoff == cutoff and stored.params["model"] == meta["model"]
    # what the CLV training's window fits take from it (clv.windows.WindowFits)
    with duckdb.connect(str(database)) as conn:
        assert stored_fits.served_family(conn) == (meta["model"], float(stored.params["penalizer"]))

    second = dg.materialize([btyd_scores], resources=resources)
    meta = _metadata(second)
    assert meta["fit"] == "reused" and meta["fit_age_days"] == 0 and meta["fit_cutoff"] == str(cutoff)
    with duckdb.connect(str(database)) as conn:
        reused_scores = conn.execute("select * from ml.btyd_scores order by customer_id").df()
        assert conn.execute("select count(*) from ml.stored_fits").fetchone()[0] == 1
    # same parameters, same cutoff: the reused fit gives the refit's scores, value for value
    pd.testing.assert_frame_equal(reused_scores, refit_scores)
    assert reused_scores["p_alive"].between(0, 1).all() and reused_scores["clv"].sum() > 0

    # a stored fit older than refit_after_days (8) is refitted, and the new fit replaces it
    with duckdb.connect(str(database)) as conn:
        conn.execute("update ml.stored_fits set fit_cutoff = ?", [cutoff - timedelta(days=9)])
    third = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert third["fit"] == "refitted" and "9 days old" in third["fit_reason"]
    with duckdb.connect(str(database)) as conn:
        assert stored_fits.load(conn, stored_fits.BTYD).fit_cutoff == cutoff
        pd.testing.assert_frame_equal(conn.execute("select * from ml.btyd_scores order by customer_id").df(),
                                      refit_scores)

    # the training run refits whatever is stored
    forced = _metadata(dg.materialize([btyd_scores], resources=resources,
                                      run_config={"ops": {"ml__btyd_scores": {"config": {"refit": True}}}}))
    assert forced["fit"] == "refitted" and "refit requested" in forced["fit_reason"]


def test_a_stored_btyd_fit_is_refitted_when_the_runs_without_orders_it_read_change(features_db, data_env):
    """The fit read its customers' time with the store's stretches without orders as of its cutoff;
    a month of orders gone from before that cutoff (or a missing file added) is another time:
    refit, even the next night. A store without such runs keeps the key it had before runs entered it."""
    database = data_env / "runs.duckdb"
    shutil.copy(features_db, database)
    resources = {"duckdb": DuckDBResource(database=str(database))}
    config = clv.load_config()
    with duckdb.connect(str(database)) as conn:
        cutoff = scoring_cutoff(conn)
        assert stored_fits.btyd_key_at(conn, config, cutoff) == stored_fits.btyd_config_key(config)
    assert _metadata(dg.materialize([btyd_scores], resources=resources))["fit"] == "refitted"
    assert _metadata(dg.materialize([btyd_scores], resources=resources))["fit"] == "reused"
    hole = (cutoff - timedelta(days=200), cutoff - timedelta(days=170))
    with duckdb.connect(str(database)) as conn:
        conn.execute("delete from staging.orders where order_date between ? and ?", list(hole))
        (gap,) = order_gaps(conn, until=cutoff)
        assert (gap.start, gap.end) == hole
    meta = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert meta["fit"] == "refitted" and "runs without orders the fit read" in meta["fit_reason"]
    with duckdb.connect(str(database)) as conn:
        stored = stored_fits.load(conn, stored_fits.BTYD)
        assert stored.config_key == stored_fits.btyd_key_at(conn, config, cutoff) != stored_fits.btyd_config_key(config)
    assert _metadata(dg.materialize([btyd_scores], resources=resources))["fit"] == "reused"


def _mbgnbd_on_copy(features_db, data_env, name: str):
    """A copy of the features store under ``name`` and an MBG/NBD fitted on its customers."""
    database = data_env / name
    shutil.copy(features_db, database)
    return database, btyd.fit_btyd(_summary(features_db)[1], btyd.MBGNBD)


def test_btyd_scores_in_batches_equal_one_pass(features_db, data_env):
    database, model = _mbgnbd_on_copy(features_db, data_env, "batches.duckdb")
    config = clv.load_config()
    with duckdb.connect(str(database)) as conn:
        cutoff = scoring_cutoff(conn)
        customers = conn.execute(f"select count(*) from {FEATURE_TABLE}").fetchone()[0]
        one = write_btyd_scores(conn, model, config, cutoff, batch=10**9, chunk=100)
        single = conn.execute("select * from ml.btyd_scores order by customer_id").df()
        many = write_btyd_scores(conn, model, config, cutoff, batch=250, chunk=100)
        batched = conn.execute("select * from ml.btyd_scores order by customer_id").df()
    assert one["batches"] == 1 and many["batches"] == -(-customers // 250)
    assert len(batched) == customers == one["rows"] == many["rows"]
    # bit for bit: a customer's scores do not depend on who else is evaluated with it
    pd.testing.assert_frame_equal(batched, single, check_exact=True)
    assert many["expected_spend"] == pytest.approx(one["expected_spend"], rel=1e-12)
    assert (batched["spend_p90_ratio"] >= batched["spend_p10_ratio"]).all()


class _SpendModel:
    """A stand-in for the registered booster: predicted spend = 1.1 x the BTYD's over the horizon
    (what is under test here is the batching and the ranking, not the model), with a sharpened
    point forecast whose scale must hold over the whole store, not per batch."""

    sharpen = 1.4
    point_rule = "sharpen"
    features = ["frequency", "spend_rate_per_week", "btyd_p_alive"]  # what the scoring reads of the features
    naive_weight = 0.0  # no naive spend-rate component in the blend (ClvModel.naive_weight)
    season = None  # no season to put the forecast into (ClvModel.season)

    def predict(self, frame, horizon_days, ratio):
        return 1.1 * frame["btyd_expected_spend_horizon"].to_numpy(dtype=float)

    def label_window_part(self, spend, horizon_days, ratio):
        # 1.1 x the BTYD over h: the horizon's spend back over the BTYD's growth to H
        return np.asarray(spend, dtype=float) / np.asarray(ratio, dtype=float)

    def horizon_gamma(self, horizon_days=None):
        return self.sharpen

    def point(self, mean, horizon_days=None, p50_ratio=None, btyd_mean=None, frame=None):
        from clv_platform.models.clv.objective import sharpen

        return sharpen(mean, self.horizon_gamma(horizon_days))


def conn_frame(database, join_sql, features):
    with duckdb.connect(str(database)) as conn:
        return conn.execute(join_sql(conn, features).format(where="true")).df()


def test_clv_scores_in_batches_equal_the_whole_frame_scoring(features_db, data_env):
    from clv_platform.models.clv_assets import (_total_interval_sql, scoring_join_sql, total_interval,
                                                write_clv_scores)

    database = data_env / "clv.duckdb"
    shutil.copy(features_db, database)
    config = clv.load_config()
    _, summary = _summary(features_db)
    model = btyd.fit_btyd(summary, btyd.MBGNBD)
    scored_at = datetime(2026, 11, 2, 3)
    with duckdb.connect(str(database)) as conn:
        cutoff = scoring_cutoff(conn)
        write_btyd_scores(conn, model, config, cutoff, batch=10**9)
        one = write_clv_scores(conn, _SpendModel(), config, "v1", scored_at, batch=10**9)
        single = conn.execute("select * from scores.customer_clv order by customer_id").df()
        many = write_clv_scores(conn, _SpendModel(), config, "v1", scored_at, batch=211)
        batched = conn.execute("select * from scores.customer_clv order by customer_id").df()
        # the batches went through a temp table that the tier SQL replaced with the stored table
        assert conn.execute("select count(*) from duckdb_tables() where table_name = '_clv_unranked'").fetchone() == (0,)
        types = dict(conn.execute("select column_name, column_type from (describe scores.customer_clv)").fetchall())
        assert (types["model_version"], types["scored_at"], types["clv_rank"]) == ("VARCHAR", "TIMESTAMP", "BIGINT")
        interval = _total_interval_sql(conn)
        frame = clv.frame_from_tables(conn.execute(f"select * from {FEATURE_TABLE}").df(),
                                      conn.execute("select * from ml.btyd_scores").df())
        # the scoring reads features and BTYD rows joined in DuckDB: the same frame as the pandas merge
        joined = clv.add_derived_features(conn.execute(scoring_join_sql(conn).format(where="true")).df())
    pd.testing.assert_frame_equal(joined, frame)
    # with a model's features: only those feature columns (and the spend rate's inputs) are read
    narrow = clv.add_derived_features(conn_frame(database, scoring_join_sql, _SpendModel.features))
    assert {"frequency", "T_days", "total_net_spend", "spend_rate_per_week", "btyd_p_alive"} <= set(narrow.columns)
    assert "country" not in narrow.columns and narrow.shape[1] < joined.shape[1]
    pd.testing.assert_frame_equal(narrow, joined[list(narrow.columns)])
    assert one["batches"] == 1 and many["batches"] == -(-len(single) // 211)
    # the label-window total over the BTYD's (the nightly's level reading), summed over the batches
    ratio, btyd_h = frame["btyd_horizon_ratio"].to_numpy(), frame["btyd_expected_spend"].to_numpy()
    reference_level = float((1.1 * frame["btyd_expected_spend_horizon"].to_numpy() / ratio).sum() / btyd_h.sum())
    assert one["served_over_btyd"] == pytest.approx(reference_level, rel=1e-12)
    assert many["served_over_btyd"] == pytest.approx(reference_level, rel=1e-12)
    assert reference_level == pytest.approx(1.1, rel=0.01)
    pd.testing.assert_frame_equal(batched, single)
    # the old whole-frame path: predict everyone, then clv.assign_tiers in pandas
    expected = clv.assign_tiers(clv.predict_scores(_SpendModel(), frame, config)).assign(
        model_version="v1", scored_at=scored_at).sort_values("customer_id").reset_index(drop=True)
    assert list(batched.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(batched, expected, check_dtype=False, rtol=1e-12)
    assert set(batched["clv_tier"]) == {"Top 1%", "1-5%", "5-10%", "10-25%", "Rest"}
    assert sorted(batched["clv_rank"]) == list(range(1, len(batched) + 1))
    assert batched["predicted_clv_point"].sum() == pytest.approx(batched["predicted_clv"].sum(), rel=1e-9)
    assert (batched["predicted_clv_point"] != batched["predicted_clv"]).any()
    reference = total_interval(expected)
    assert interval.keys() == reference.keys()
    for key, value in reference.items():
        assert interval[key] == pytest.approx(value, rel=1e-9), key


class _FailingSecondBatch(_SpendModel):
    """Fails on its second batch, after the first was written to the temp table."""

    def __init__(self):
        self.calls = 0

    def predict(self, frame, horizon_days, ratio):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("scoring failed mid-way")
        return super().predict(frame, horizon_days, ratio)


def test_a_clv_scoring_failing_mid_way_leaves_the_scores_as_they_were(features_db, data_env):
    from clv_platform.models.clv_assets import write_clv_scores

    database = data_env / "clv.duckdb"
    shutil.copy(features_db, database)
    config = clv.load_config()
    _, summary = _summary(features_db)
    with duckdb.connect(str(database)) as conn:
        write_btyd_scores(conn, btyd.fit_btyd(summary, btyd.MBGNBD), config, scoring_cutoff(conn), batch=10**9)
        write_clv_scores(conn, _SpendModel(), config, "v1", datetime(2026, 11, 2, 3), batch=10**9)
        before = conn.execute("select * from scores.customer_clv order by customer_id").df()
        with pytest.raises(RuntimeError, match="mid-way"):
            write_clv_scores(conn, _FailingSecondBatch(), config, "v2", datetime(2026, 11, 3, 3), batch=211)
        after = conn.execute("select * from scores.customer_clv order by customer_id").df()
        assert conn.execute("select count(*) from duckdb_tables() where table_name = '_clv_unranked'").fetchone() == (0,)
    assert set(after["model_version"]) == {"v1"} and len(after) > 211
    pd.testing.assert_frame_equal(after, before)


def test_customers_sharing_their_btyd_inputs_are_scored_once_with_the_same_values(features_db, data_env):
    """Scoring distinct (frequency, recency, T, monetary) rows once per chunk gives every customer
    the closed-form values of scoring them one by one, and identical customers identical intervals."""
    from clv_platform.models.clv_assets import BTYD_KEY_COLUMNS

    database = data_env / "dedupe.duckdb"
    shutil.copy(features_db, database)
    config = clv.load_config()
    _, summary = _summary(features_db)
    model = btyd.fit_btyd(summary, btyd.MBGNBD)
    with duckdb.connect(str(database)) as conn:
        cutoff = scoring_cutoff(conn)
        write_btyd_scores(conn, model, config, cutoff, batch=10**9)
        table = conn.execute("select * from ml.btyd_scores order by customer_id").df()
        features = conn.execute(f"select * from {FEATURE_TABLE} order by customer_id").df()
    frame, _ = clv.scoring_frame(None, cutoff, config, model=model, features=features)
    one_by_one = clv.btyd_scores_table(frame, model, config, cutoff)
    distinct = len(features.drop_duplicates(BTYD_KEY_COLUMNS))
    assert distinct < len(features)  # one-time buyers of the same first-order day share their inputs
    deterministic = ["frequency", "recency_weeks", "T_weeks", "monetary", "p_alive", "expected_purchases",
                     "expected_aov", "expected_spend", "clv", "expected_purchases_label_window",
                     "expected_spend_label_window", "clv_label_window", "horizon_ratio"]
    pd.testing.assert_frame_equal(table[["customer_id", *deterministic]],
                                  one_by_one[["customer_id", *deterministic]], rtol=1e-12)
    joined = table[["customer_id", "spend_p10_ratio", "spend_p90_ratio"]].join(
        features.set_index("customer_id")[BTYD_KEY_COLUMNS], on="customer_id")
    spread = joined.groupby(BTYD_KEY_COLUMNS, dropna=False)[["spend_p10_ratio", "spend_p90_ratio"]].nunique()
    assert (spread <= 1).all().all()


def test_the_shap_frame_of_a_large_store_is_a_deterministic_customer_sample(features_db, data_env):
    """Above ``[explain] max_customers`` the SHAP frame holds exactly that many customers (the same
    ones every run), each row equal to the whole-store frame's row; at or below it, every customer."""
    from clv_platform.models.clv_assets import explain_frame

    database = data_env / "explain.duckdb"
    shutil.copy(features_db, database)
    frame, summary = _summary(features_db)
    model = btyd.fit_btyd(summary, btyd.MBGNBD)
    with duckdb.connect(str(database)) as conn:
        write_btyd_scores(conn, model, clv.load_config(), scoring_cutoff(conn), batch=10**9, chunk=100)
        customers = conn.execute(f"select count(*) from {FEATURE_TABLE}").fetchone()[0]
        whole = explain_frame(conn, 0)
        assert explain_frame(conn, customers).equals(whole)
        sample = explain_frame(conn, 300)
        again = explain_frame(conn, 300)
        leftover = conn.execute("select count(*) from duckdb_tables() where table_name = '_explain_customers'").fetchone()[0]
    assert clv.load_config().explain_max_customers == 50_000
    assert len(whole) == customers > 300 and leftover == 0
    assert len(sample) == 300 and sample["customer_id"].is_unique and sample["customer_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(sample, again)
    expected = whole[whole["customer_id"].isin(sample["customer_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample, expected)


def test_btyd_scores_without_the_mixture_inputs_leave_only_those_columns_null(features_db, data_env):
    database, model = _mbgnbd_on_copy(features_db, data_env, "no_mixture.duckdb")
    config = clv.load_config()
    with duckdb.connect(str(database)) as conn:
        cutoff = scoring_cutoff(conn)
        write_btyd_scores(conn, model, config, cutoff, batch=10**9, chunk=100)
        full = conn.execute("select * from ml.btyd_scores order by customer_id").df()
        write_btyd_scores(conn, model, config, cutoff, batch=10**9, chunk=100, mixture=False)
        lean = conn.execute("select * from ml.btyd_scores order by customer_id").df()
    skipped = [clv.P_BUY_LABEL, *clv.POSITIVE_COLUMNS]
    assert list(lean.columns) == list(full.columns)
    assert lean[skipped].isna().all().all() and full[skipped].notna().all().all()
    # the same draws: intervals, medians and P(buy over the horizon) do not move
    pd.testing.assert_frame_equal(lean.drop(columns=skipped), full.drop(columns=skipped))
    assert 0 < full[clv.P_BUY_HORIZON].mean() < 1

    class _Mixture(clv.ClvModel):
        def buy_probability(self, frame):
            return np.full(len(frame), 0.5)

    served = object.__new__(_Mixture)  # only its buy probability is read
    with pytest.raises(ValueError, match="materialize ml/btyd_scores again"):
        served.mixture_inputs(lean)
    p, positive = served.mixture_inputs(full)
    assert p.shape == (len(full),) and positive.shape == (len(full), len(clv.POSITIVE_COLUMNS))


def test_the_mixture_inputs_are_drawn_only_when_a_model_may_read_them(features_db, data_env, monkeypatch):
    from clv_platform.models import clv_assets, registry

    database = data_env / "mixture_need.duckdb"
    shutil.copy(features_db, database)
    resources = {"duckdb": DuckDBResource(database=str(database))}
    served = {"rule": None}
    monkeypatch.setattr(registry, "served_point_rule",
                        lambda conn, name=registry.DEFAULT_MODEL_NAME: served["rule"] and ("v1", served["rule"]))

    meta = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert meta["mixture_inputs"] == "no model served yet"
    served["rule"] = "sharpen"
    meta = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert meta["mixture_inputs"] == "skipped: the served model v1 uses the sharpen point rule"
    with duckdb.connect(str(database)) as conn:
        assert conn.execute(f"select count(*) from ml.btyd_scores where {clv.P_BUY_LABEL} is not null").fetchone()[0] == 0
    served["rule"] = clv.MIXTURE
    meta = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert meta["mixture_inputs"] == "the served model v1 uses the mixture point rule"
    with duckdb.connect(str(database)) as conn:
        assert conn.execute(f"select count(*) from ml.btyd_scores where {clv.P_BUY_LABEL} is null").fetchone()[0] == 0
    # a run that trains the models draws them whatever is served
    served["rule"] = "sharpen"
    monkeypatch.setattr(clv_assets.stored_fits, "training_run", lambda context, keys: "this run trains the models")
    meta = _metadata(dg.materialize([btyd_scores], resources=resources))
    assert meta["mixture_inputs"].startswith("this run trains the models")


def test_a_whole_training_job_run_is_a_training_run():
    """A whole asset job run records an empty asset selection: `clv-platform files`' rebuild_and_train
    reused the stored BTYD fit ("reused the fit of ...") and skipped the mixture inputs although it
    trains the models. The job's own assets say whether it trains; a subset without them does not."""
    seen = {}
    trains = dg.AssetKey(["ml", "trains"])

    @dg.asset(key=trains)
    def trainer():
        return None

    @dg.asset(deps=[trains])
    def reader(context):
        seen[context.run.job_name] = stored_fits.training_run(context, (trains,))

    @dg.asset
    def other(context):
        seen[context.run.job_name] = stored_fits.training_run(context, (trains,))

    defs = dg.Definitions(assets=[trainer, reader, other], jobs=[
        dg.define_asset_job("with_training", selection=dg.AssetSelection.assets(trainer, reader)),
        dg.define_asset_job("without_training", selection=dg.AssetSelection.assets(other)),
        dg.define_asset_job("subset", selection=dg.AssetSelection.assets(trainer, reader))])
    instance = dg.DagsterInstance.ephemeral()
    for name in ("with_training", "without_training"):
        assert defs.resolve_job_def(name).execute_in_process(instance=instance).success
    assert defs.resolve_job_def("subset").execute_in_process(instance=instance,
                                                             asset_selection=[reader.key]).success
    assert seen == {"with_training": "this run trains the models", "without_training": None, "subset": None}
